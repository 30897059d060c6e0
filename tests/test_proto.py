"""The proto is wire-identical to the Go SDK's, and the committed code is current."""

from __future__ import annotations

import filecmp
import os
import pathlib
import subprocess
import sysconfig

import pytest
from google.protobuf import any_pb2

import grpc_terminal as gt

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO = "c1/connector/v2/annotation_provision_failure.proto"
# The package under test: the source tree under `make test`, site-packages under `make test-wheel`.
PACKAGE = pathlib.Path(gt.__file__).resolve().parent
GEN = PACKAGE / "_gen"


def test_names_and_numbers() -> None:
    desc = gt.ProvisionFailureDetail.DESCRIPTOR
    assert desc.full_name == "c1.connector.v2.ProvisionFailureDetail"
    assert desc.file.name == PROTO
    assert desc.file.package == "c1.connector.v2"
    fields = {f.name: (f.number, f.type) for f in desc.fields}
    assert fields == {"reason": (1, desc.fields_by_name["reason"].TYPE_ENUM),
                      "detail": (2, desc.fields_by_name["detail"].TYPE_STRING)}
    assert desc.enum_types_by_name["Reason"].full_name == "c1.connector.v2.ProvisionFailureDetail.Reason"
    assert dict(gt.ProvisionFailureDetail.Reason.items()) == {
        "REASON_UNSPECIFIED": 0,
        "REASON_USER_NOT_PROVISIONABLE": 1,
        "REASON_TARGET_MANAGED_EXTERNALLY": 2,
        "REASON_LICENSE_EXHAUSTED": 3,
        "REASON_VALIDATION_FAILURE": 4,
        "REASON_OPERATION_NOT_PERMITTED": 5,
    }


def test_golden_bytes_and_type_url() -> None:
    msg = gt.ProvisionFailureDetail(reason=3, detail="x")  # type: ignore[arg-type]
    assert msg.SerializeToString() == b"\x08\x03\x12\x01x"
    packed = any_pb2.Any()
    packed.Pack(msg)
    assert packed.type_url == "type.googleapis.com/c1.connector.v2.ProvisionFailureDetail"
    future = gt.ProvisionFailureDetail.FromString(b"\x08\x2a\x12\x01y")
    assert future.reason == 42  # open enum: unknown values survive


def test_committed_code_matches_make_proto(tmp_path: pathlib.Path) -> None:
    python = os.environ.get("GT_PROTOC_PYTHON")
    if not python:
        pytest.skip("GT_PROTOC_PYTHON is not set (make test sets it)")
    assert os.path.exists(python), f"GT_PROTOC_PYTHON={python} does not exist: run make proto once"
    env = dict(os.environ, PATH=f"{os.path.dirname(python)}{os.pathsep}{os.environ['PATH']}")
    subprocess.run(
        [python, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}", f"--python_out={tmp_path}",
         f"--mypy_out={tmp_path}", str(ROOT / "proto" / PROTO)],
        check=True, env=env, capture_output=True, timeout=120,
    )
    for suffix in ("_pb2.py", "_pb2.pyi"):
        rel = PROTO.replace(".proto", suffix)
        fresh, committed = tmp_path / rel, GEN / rel
        assert committed.exists(), f"{committed.name} is not committed"
        assert filecmp.cmp(fresh, committed, shallow=False), f"{rel} is stale: run make proto"


def test_the_package_carries_its_types_and_its_proto() -> None:
    assert (PACKAGE / "py.typed").is_file()
    assert (GEN / PROTO.replace(".proto", "_pb2.pyi")).is_file()
    shipped = GEN / PROTO
    assert shipped.is_file(), "the .proto is not shipped beside its generated code: run make proto"
    assert shipped.read_bytes() == (ROOT / "proto" / PROTO).read_bytes(), "stale copy: run make proto"


def test_installed_package_is_the_one_under_test() -> None:
    if not os.environ.get("GT_EXPECT_INSTALLED"):
        pytest.skip("GT_EXPECT_INSTALLED is not set (make test-wheel sets it)")
    site = pathlib.Path(sysconfig.get_paths()["purelib"]).resolve()
    assert PACKAGE.is_relative_to(site), f"grpc_terminal was imported from {PACKAGE}, not from {site}"
    assert not (PACKAGE.parent / "pyproject.toml").exists()
