"""grpc_terminal.validation against the real pydantic and protovalidate, over real loopback servers."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import Callable
from typing import Any, Literal

import grpc
import pytest

pytest.importorskip("pydantic", reason="the validation extra is not installed")

import pydantic
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    field_mask_pb2,
    message_factory,
    timestamp_pb2,
    wrappers_pb2,
)
from google.protobuf.message import Message
from google.rpc import error_details_pb2 as ed
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

import grpc_terminal as gt
from grpc_terminal.testing import loopback_server
from grpc_terminal.validation import (
    MAX_DESCRIPTION,
    MAX_VIOLATIONS,
    field_path,
    from_protovalidate,
    from_pydantic,
    validate_request,
)

Str = wrappers_pb2.StringValue
SERVICE = "test.Validation"
HAS_REASON = "reason" in ed.BadRequest.FieldViolation.DESCRIPTOR.fields_by_name


class Item(pydantic.BaseModel):
    id: int


class Order(pydantic.BaseModel):
    items: list[Item]
    labels: dict[int, str] = pydantic.Field(default_factory=dict)
    note: str = pydantic.Field("", max_length=5)

    @pydantic.model_validator(mode="after")
    def not_empty(self) -> Order:
        if self.note == "boom":
            raise ValueError("the order as a whole is wrong")
        return self


def pydantic_error(data: object, model: type[pydantic.BaseModel] = Order) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return caught.value


def synthetic(count: int, **error: Any) -> ValidationError:
    """A ValidationError with ``count`` errors, each ``error`` (pydantic's own constructor)."""
    line: InitErrorDetails = {"type": "missing", "loc": ("f",), "input": None}
    line.update(error)  # type: ignore[typeddict-item]
    return ValidationError.from_exception_data("Synthetic", [line] * count)


def violations(err: gt.StatusError) -> list[ed.BadRequest.FieldViolation]:
    assert err.bad_request is not None
    return list(err.bad_request.field_violations)


def wire_bytes(err: gt.StatusError) -> bytes:
    """Every byte the server would send for ``err``: the packed status."""
    status = gt.to_status(err)
    return b"".join(
        value if isinstance(value, bytes) else value.encode()
        for _, value in status.trailing_metadata
    ) + status.details.encode()


# -- field paths ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "path"),
    [
        (("items", 0, "id"), "items[0].id"),
        (("email_addresses", 3, "type", 2), "email_addresses[3].type[2]"),
        ((), ""),
        ((0, "id"), "[0].id"),
        (("labels", "env"), "labels.env"),
        (("labels", "team name"), "labels.`team name`"),
        (("labels", "a`b\\c"), "labels.`a\\`b\\\\c`"),
        (("labels", ""), "labels.``"),
        (("first-name",), "`first-name`"),
        (("flags", True), "flags.`True`"),
        (("x", 1.5), "x.`1.5`"),
        (("x", ("a", 1)), "x.`('a', 1)`"),
    ],
)
def test_field_path_writes_aip_paths(location: tuple[object, ...], path: str) -> None:
    assert field_path(location) == path


def test_field_path_cuts_hostile_keys_and_depth() -> None:
    key = field_path(("labels", "k" * 10_000))
    assert key.startswith("labels.`kkk") and key.endswith("...`") and len(key) < 80
    deep = field_path(["a"] * 10_000)
    assert deep.endswith("...") and len(deep) <= 210
    assert field_path(("x", "\ud800")) == "x.`?`"  # a lone surrogate cannot be sent


# -- from_pydantic, in process -------------------------------------------------------------


def test_nested_errors_become_field_violations() -> None:
    err = from_pydantic(pydantic_error({"items": [{}, {"id": "x"}], "note": "toolong"}))
    assert type(err) is gt.InvalidArgument and err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert err.field_violations == [
        ("items[0].id", "Field required"),
        ("items[1].id", "Input should be a valid integer, unable to parse string as an integer"),
        ("note", "String should have at most 5 characters"),
    ]
    if HAS_REASON:
        assert [v.reason for v in violations(err)] == ["MISSING", "INT_PARSING", "STRING_TOO_LONG"]
    assert err.message == "invalid request: 3 validation errors"
    assert err.localized_message is not None and err.localized_message.locale == "en-US"
    assert err.localized_message.message == "The request has 3 errors: items[0].id, items[1].id, note."


def test_one_error_summary_names_field_and_problem() -> None:
    err = from_pydantic(pydantic_error({"items": [{}]}))
    assert err.message == "invalid request: 1 validation error"
    assert err.localized_message is not None
    assert err.localized_message.message == "The request is invalid: items[0].id: Field required"


def test_model_validator_error_is_on_the_whole_request() -> None:
    err = from_pydantic(pydantic_error({"items": [], "note": "boom"}))
    assert err.field_violations == [("", "Value error, the order as a whole is wrong")]
    if HAS_REASON:
        assert violations(err)[0].reason == "VALUE_ERROR"
    assert err.localized_message is not None
    assert err.localized_message.message.startswith("The request is invalid: (the request): Value error")


def test_invalid_dict_key_names_the_key() -> None:
    err = from_pydantic(pydantic_error({"items": [], "labels": {"not a number": "x"}}))
    (path, description), = err.field_violations
    assert path == "labels.`not a number`"
    assert description == "invalid key: Input should be a valid integer, unable to parse string as an integer"


def test_union_members_appear_as_pydantic_reports_them() -> None:
    class U(pydantic.BaseModel):
        u: int | list[int]

    err = from_pydantic(pydantic_error({"u": "zz"}, U))
    assert [path for path, _ in err.field_violations] == ["u.int", "u.`list[int]`"]


def test_the_input_is_never_sent() -> None:
    class Kinds(pydantic.BaseModel):
        number: int
        ratio: float
        flag: bool
        when: datetime.datetime
        uid: uuid.UUID
        kind: Literal["a", "b"]
        short: str = pydantic.Field(max_length=3)
        pattern: str = pydantic.Field(pattern="^[a-z]+$")
        items: list[Item]

    secret = "hunter2-" + "s" * 100_000
    fields = ("number", "ratio", "flag", "when", "uid", "kind", "short", "pattern", "items")
    err = from_pydantic(pydantic_error(dict.fromkeys(fields, secret), Kinds))
    assert [path for path, _ in err.field_violations] == list(fields)
    sent = wire_bytes(err)
    assert b"hunter2" not in sent and len(sent) < gt.TRAILER_BUDGET


def test_a_map_key_is_part_of_the_path_but_cut() -> None:
    # A key is where the problem is (as in protovalidate's paths), so it is sent, cut to 64 characters.
    err = from_pydantic(pydantic_error({"items": [], "labels": {"k" * 100_000: "x"}}))
    (path, description), = err.field_violations
    assert path == "labels.`" + "k" * 61 + "...`"
    assert description.startswith("invalid key: ")


def test_long_messages_are_cut() -> None:
    err = from_pydantic(synthetic(1, type=PydanticCustomError("custom", "x" * 10_000)))
    (path, description), = err.field_violations
    assert path == "f" and len(description) == MAX_DESCRIPTION and description.endswith("...")


def test_ten_thousand_errors_keep_the_count() -> None:
    err = from_pydantic(synthetic(10_000))
    assert len(err.field_violations) == MAX_VIOLATIONS
    assert err.message == "invalid request: 10000 validation errors"
    assert err.localized_message is not None
    assert err.localized_message.message.endswith(" and 9995 more.")


def test_custom_error_types_become_reasons_when_they_can() -> None:
    if not HAS_REASON:
        pytest.skip("this googleapis-common-protos has no FieldViolation.reason")
    cases = {"my-custom.type": "MY_CUSTOM_TYPE", "9lives": "", "_": "", "x" * 100: "X" * 63, "é": ""}
    for kind, reason in cases.items():
        err = from_pydantic(synthetic(1, type=PydanticCustomError(kind, "bad")))
        assert violations(err)[0].reason == reason, kind


def test_wrong_kind_of_exception_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="pydantic ValidationError"):
        from_pydantic(ValueError("nope"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="protovalidate ValidationError"):
        from_protovalidate(ValueError("nope"))


# -- over a real server ----------------------------------------------------------------


def _handlers(handler: Callable[[Any, Any], Any], request_type: Any = Str) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Check": grpc.unary_unary_rpc_method_handler(
                handler,
                request_deserializer=request_type.FromString,
                response_serializer=Str.SerializeToString,
            )
        },
    )


def _validate_json(request: Str, context: grpc.ServicerContext) -> Str:
    Order.model_validate_json(request.value)
    return Str(value="ok")


def _validate_many(request: Str, context: grpc.ServicerContext) -> Str:
    items = [{"id": str(i)} if i % 2 else {} for i in range(20_000)]
    pydantic.TypeAdapter(list[Item]).validate_python(items)
    return Str(value="ok")


def _call(channel: grpc.Channel, request: Message, request_type: Any = Str) -> Any:
    stub = channel.unary_unary(
        f"/{SERVICE}/Check",
        request_serializer=request_type.SerializeToString,
        response_deserializer=Str.FromString,
    )
    return stub(request, timeout=10)


PYDANTIC_ERRORS: gt.ErrorMapping = {pydantic.ValidationError: from_pydantic}


@pytest.fixture(params=[False, True], ids=["sync", "aio"])
def aio(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_nested_pydantic_error_reaches_the_client_as_field_violations(aio: bool) -> None:
    options = {"errors": PYDANTIC_ERRORS}
    with loopback_server(_handlers(_validate_json), aio=aio, interceptor_options=options) as lb:
        with pytest.raises(gt.InvalidArgument) as caught:
            _call(lb.channel, Str(value='{"items": [{}]}'))
        assert _call(lb.channel, Str(value='{"items": [{"id": 1}]}')).value == "ok"
    err = caught.value
    assert err.field_violations == [("items[0].id", "Field required")]
    if HAS_REASON:
        assert violations(err)[0].reason == "MISSING"
    assert err.localized_message is not None and err.localized_message.locale == "en-US"
    assert not gt.is_retryable(err)


def test_server_validate_option_with_pydantic(aio: bool) -> None:
    handled: list[str] = []

    def handler(request: Str, context: grpc.ServicerContext) -> Str:
        handled.append(request.value)
        return Str(value="ok")

    def check(request: Str) -> None:
        Order.model_validate_json(request.value)

    options = {"errors": PYDANTIC_ERRORS, "validate": check}
    with loopback_server(_handlers(handler), aio=aio, interceptor_options=options) as lb:
        with pytest.raises(gt.InvalidArgument) as caught:
            _call(lb.channel, Str(value='{"items": [{"id": 1}, {}]}'))
        assert _call(lb.channel, Str(value='{"items": []}')).value == "ok"
    assert caught.value.field_violations == [("items[1].id", "Field required")]
    assert handled == ['{"items": []}']


def test_aio_client_gets_the_field_violations(aio: bool) -> None:
    async def call(lb: Any) -> gt.StatusError:
        async with lb.aio_channel() as channel:
            stub = channel.unary_unary(
                f"/{SERVICE}/Check",
                request_serializer=Str.SerializeToString,
                response_deserializer=Str.FromString,
            )
            with pytest.raises(gt.InvalidArgument) as caught:
                await stub(Str(value='{"items": [{"id": "x"}]}'), timeout=10)
            return caught.value

    options = {"errors": PYDANTIC_ERRORS}
    with loopback_server(_handlers(_validate_json), aio=aio, interceptor_options=options) as lb:
        err = asyncio.run(call(lb))
    assert [path for path, _ in err.field_violations] == ["items[0].id"]


@pytest.mark.parametrize("budget", [gt.TRAILER_BUDGET, 1024])
def test_ten_thousand_errors_still_arrive_as_invalid_argument(aio: bool, budget: int) -> None:
    options = {"errors": PYDANTIC_ERRORS, "budget": budget}
    with (
        loopback_server(_handlers(_validate_many), aio=aio, interceptor_options=options) as lb,
        pytest.raises(gt.InvalidArgument) as caught,
    ):
        _call(lb.channel, Str(value="x"))
    err = caught.value
    assert err.message == "invalid request: 10000 validation errors"
    # The budget cut the list (and maybe the summary), never the code or the first violations.
    assert 0 < len(err.field_violations) < MAX_VIOLATIONS
    assert err.field_violations[0] == ("[0].id", "Field required")


# -- protovalidate -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def shop() -> tuple[Any, Any]:
    """``(Order, Item)`` google.protobuf classes with protovalidate rules, built in a pool of their own.

    The rules are the ones protovalidate reads: ``buf/validate/validate.proto``
    comes from the installed protovalidate itself (its serialized descriptor),
    so no third-party .proto is kept here.
    """
    pytest.importorskip("protovalidate", reason="protovalidate is not installed")
    from protovalidate._gen.buf.validate import validate_pb

    pool = descriptor_pool.DescriptorPool()
    for module in (descriptor_pb2, duration_pb2, field_mask_pb2, timestamp_pb2):
        pool.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(validate_pb.desc().proto.to_binary())

    def cls(name: str) -> Any:
        descriptor = pool.FindMessageTypeByName(name)
        if hasattr(message_factory, "GetMessageClass"):
            return message_factory.GetMessageClass(descriptor)
        return message_factory.MessageFactory(pool).GetPrototype(descriptor)  # protobuf < 4.22

    field_rules, field_options = cls("buf.validate.FieldRules"), cls("google.protobuf.FieldOptions")
    message_options = cls("google.protobuf.MessageOptions")

    def rules(**kwargs: Any) -> descriptor_pb2.FieldOptions:
        options = field_options()
        options.Extensions[pool.FindExtensionByName("buf.validate.field")].MergeFrom(field_rules(**kwargs))
        return descriptor_pb2.FieldOptions.FromString(options.SerializeToString())

    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="gt_test/validation_shop.proto", package="gt_test", syntax="proto3",
        dependency=["buf/validate/validate.proto"],
    )
    item = file.message_type.add(name="Item")
    item.field.add(name="id", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL,
                   options=rules(string={"min_len": 1}))
    order = file.message_type.add(name="Order")
    order.field.add(name="items", number=1, type=F.TYPE_MESSAGE, type_name=".gt_test.Item",
                    label=F.LABEL_REPEATED)
    entry = order.nested_type.add(name="LabelsEntry", options=descriptor_pb2.MessageOptions(map_entry=True))
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    order.field.add(name="labels", number=2, type=F.TYPE_MESSAGE, type_name=".gt_test.Order.LabelsEntry",
                    label=F.LABEL_REPEATED,
                    options=rules(map={"keys": {"string": {"max_len": 5}},
                                       "values": {"string": {"max_len": 3}}}))
    order.field.add(name="email", number=3, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    whole = message_options()
    whole.Extensions[pool.FindExtensionByName("buf.validate.message")].cel.add(
        id="order.email_not_test",
        message="email must not be the test address",
        expression="this.email != 'x@y.z'",
    )
    order.options.MergeFromString(whole.SerializeToString())
    pool.Add(file)
    return cls("gt_test.Order"), cls("gt_test.Item")


def bad_order(shop: tuple[Any, Any]) -> Message:
    order, item = shop
    message: Message = order(items=[item(id="a"), item(id="")], labels={'k"x': "long", "toolongkey": "v"},
                             email="x@y.z")
    return message


EXPECTED_PROTOVALIDATE = [
    ("", "email must not be the test address", "ORDER_EMAIL_NOT_TEST"),
    ("items[1].id", "must be at least 1 characters", "STRING_MIN_LEN"),
    ('labels.`k"x`', "must be at most 3 characters", "STRING_MAX_LEN"),
    ("labels.toolongkey", "invalid key: must be at most 5 characters", "STRING_MAX_LEN"),
]


def test_protovalidate_violations_become_field_violations(shop: tuple[Any, Any]) -> None:
    import protovalidate

    with pytest.raises(protovalidate.ValidationError) as caught:
        protovalidate.validate(bad_order(shop))
    err = from_protovalidate(caught.value)
    got = [(v.field, v.description, v.reason if HAS_REASON else "") for v in violations(err)]
    expected = [(p, d, r if HAS_REASON else "") for p, d, r in EXPECTED_PROTOVALIDATE]
    assert sorted(got) == sorted(expected)
    assert err.message == "invalid request: 4 validation errors"


def test_validate_request_passes_good_and_odd_requests(shop: tuple[Any, Any]) -> None:
    order, item = shop
    validate_request(order(items=[item(id="a")], labels={"k": "v"}))
    validate_request(b"raw bytes")  # no deserializer: nothing to validate
    validate_request(None)
    with pytest.raises(gt.InvalidArgument) as caught:
        validate_request(bad_order(shop))
    assert len(caught.value.field_violations) == 4
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_many_protovalidate_violations_are_capped(shop: tuple[Any, Any]) -> None:
    order, item = shop
    with pytest.raises(gt.InvalidArgument) as caught:
        validate_request(order(items=[item(id="")] * 5_000))
    err = caught.value
    assert len(err.field_violations) == MAX_VIOLATIONS
    assert err.message == "invalid request: 5000 validation errors"
    assert err.field_violations[-1][0] == f"items[{MAX_VIOLATIONS - 1}].id"


@pytest.mark.parametrize("how", ["in handler", "mapping", "validate=validate_request", "validate=mapped"])
def test_protovalidate_error_reaches_the_client(shop: tuple[Any, Any], aio: bool, how: str) -> None:
    import protovalidate

    order, _ = shop
    handled: list[Message] = []

    def handler(request: Message, context: grpc.ServicerContext) -> Str:
        if how == "in handler":
            validate_request(request)
        elif how == "mapping":
            protovalidate.validate(request)
        handled.append(request)
        return Str(value="ok")

    mapped = {"errors": {protovalidate.ValidationError: from_protovalidate}}
    options: dict[str, object] = {
        "in handler": {},
        "mapping": mapped,
        "validate=validate_request": {"validate": validate_request},
        "validate=mapped": {**mapped, "validate": protovalidate.validate},
    }[how]
    with loopback_server(_handlers(handler, order), aio=aio, interceptor_options=options) as lb:
        with pytest.raises(gt.InvalidArgument) as caught:
            _call(lb.channel, bad_order(shop), order)
        assert _call(lb.channel, order(), order).value == "ok"
    assert sorted(caught.value.field_violations) == sorted((p, d) for p, d, _ in EXPECTED_PROTOVALIDATE)
    assert len(handled) == 1  # only the valid request reached the handler


def test_protovalidate_oddities_do_not_crash() -> None:
    class Sub:
        def __init__(self, field: object, value: object) -> None:
            self.field, self.value = field, value

    class Element:
        def __init__(self, name: object, sub: object = None) -> None:
            self.field_name, self.subscript = name, sub

    class Path:
        def __init__(self, *elements: Element) -> None:
            self.elements = list(elements)

    class Violation:
        def __init__(
            self, path: Path | None, message: object = "bad", rule_id: object = "r", for_key: object = False
        ) -> None:
            self.field, self.message, self.rule_id, self.for_key = path, message, rule_id, for_key

    class Error(Exception):
        violations: list[object]

    exc = Error()
    exc.violations = [
        Violation(Path(Element("[pkg.ext]"), Element("m", Sub("bool_key", True)),
                       Element("n", Sub("int_key", -3)))),
        Violation(Path(Element("items", Sub("index", 2)), Element(7)), message=None, rule_id=None),
        Violation(None, message="", rule_id="only.id"),
        Violation(Path(Element("m", Sub(None, 1))), message="bad \ud800 value", for_key="yes"),
        object(),
    ]
    err = from_protovalidate(exc)
    assert [v.field for v in violations(err)] == ["[pkg.ext].m.true.n.`-3`", "items[2].`7`", "", "m", ""]
    assert [v.description for v in violations(err)] == ["bad", "", "only.id", "bad ? value", ""]
