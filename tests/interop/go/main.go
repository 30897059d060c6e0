// Command peer is the Go side of the grpc-terminal interop tests.
//
// It is built at test time in GOPATH mode from Debian's grpc-go and protobuf
// sources, against Go types that Debian's protoc-gen-go generates from the
// repository's proto/ directory. Two modes:
//
//	peer server            serve gtinterop.GoPeer/Fail on 127.0.0.1:0, print {"port": N}
//	peer client -addr A K  call /test.Probe/Unary with each key K, print one JSON line per call
//
// Both exit when stdin closes, so a test that dies cannot leave them behind.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"net"
	"os"
	"strings"
	"time"

	pb "github.com/conductorone/baton-sdk/pb/c1/connector/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Detail is the admin-facing text the Go server sends for reason name.
func Detail(name string) string {
	return fmt.Sprintf("Okta: user 'jdöe' is SUSPENDED (%s, 100%% sure)", name)
}

// fail builds the error the Go server returns for one request value:
// "REASON_NAME" or "wrapped:REASON_NAME".
func fail(value string) error {
	wrapped := strings.HasPrefix(value, "wrapped:")
	name := strings.TrimPrefix(value, "wrapped:")
	number, ok := pb.ProvisionFailureDetail_Reason_value["REASON_"+name]
	if !ok {
		return status.Errorf(codes.InvalidArgument, "unknown reason %q", name)
	}
	reason := pb.ProvisionFailureDetail_Reason(number)
	code := codes.FailedPrecondition
	if reason == pb.ProvisionFailureDetail_REASON_OPERATION_NOT_PERMITTED {
		code = codes.PermissionDenied
	}
	detail := Detail(name)
	st, err := status.New(code, detail).WithDetails(&pb.ProvisionFailureDetail{Reason: reason, Detail: detail})
	if err != nil {
		return status.Errorf(codes.Internal, "WithDetails: %v", err)
	}
	if wrapped {
		return fmt.Errorf("grant failed: %w", st.Err())
	}
	return st.Err()
}

// unwrapStatus gives a wrapped status error the treatment current grpc-go
// (1.55+) gives it in status.FromError: code and details of the wrapped
// status, message of the whole chain. Debian's grpc-go 1.33 does not unwrap
// and would send UNKNOWN with no details.
func unwrapStatus(ctx context.Context, req interface{}, _ *grpc.UnaryServerInfo,
	handler grpc.UnaryHandler) (interface{}, error) {
	resp, err := handler(ctx, req)
	if err == nil {
		return resp, nil
	}
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return resp, err
	}
	var inner interface{ GRPCStatus() *status.Status }
	if errors.As(err, &inner) {
		p := inner.GRPCStatus().Proto()
		p.Message = err.Error()
		return resp, status.ErrorProto(p)
	}
	return resp, err
}

type goPeer interface{}

func failHandler(_ interface{}, ctx context.Context, dec func(interface{}) error,
	interceptor grpc.UnaryServerInterceptor) (interface{}, error) {
	in := new(wrapperspb.StringValue)
	if err := dec(in); err != nil {
		return nil, err
	}
	info := &grpc.UnaryServerInfo{FullMethod: "/gtinterop.GoPeer/Fail"}
	h := func(ctx context.Context, req interface{}) (interface{}, error) {
		return nil, fail(req.(*wrapperspb.StringValue).GetValue())
	}
	if interceptor == nil {
		return h(ctx, in)
	}
	return interceptor(ctx, in, info, h)
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: "gtinterop.GoPeer",
	HandlerType: (*goPeer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Fail", Handler: failHandler}},
	Streams:     []grpc.StreamDesc{},
}

func serve() error {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(unwrapStatus))
	srv.RegisterService(&serviceDesc, struct{}{})
	go func() {
		_, _ = io.Copy(ioutil.Discard, os.Stdin)
		srv.Stop()
	}()
	line, _ := json.Marshal(map[string]int{"port": lis.Addr().(*net.TCPAddr).Port})
	fmt.Println(string(line))
	return srv.Serve(lis)
}

// Result is what the client prints for one call.
type Result struct {
	Key      string                   `json:"key"`
	Code     string                   `json:"code"`
	CodeNum  int                      `json:"code_num"`
	Message  string                   `json:"message"`
	Details  []map[string]interface{} `json:"details"`
	Pushback []string                 `json:"pushback"`
	Value    string                   `json:"value,omitempty"`
}

func describe(d interface{}) map[string]interface{} {
	switch m := d.(type) {
	case *pb.ProvisionFailureDetail:
		return map[string]interface{}{
			"type": "c1.connector.v2.ProvisionFailureDetail", "reason": m.GetReason().String(),
			"reason_num": int(m.GetReason()), "detail": m.GetDetail(),
		}
	case *errdetails.ErrorInfo:
		return map[string]interface{}{
			"type": "google.rpc.ErrorInfo", "reason": m.GetReason(), "domain": m.GetDomain(),
			"metadata": m.GetMetadata(),
		}
	case *errdetails.RetryInfo:
		return map[string]interface{}{
			"type": "google.rpc.RetryInfo", "seconds": m.GetRetryDelay().GetSeconds(),
			"nanos": m.GetRetryDelay().GetNanos(),
		}
	case *errdetails.RequestInfo:
		return map[string]interface{}{"type": "google.rpc.RequestInfo", "request_id": m.GetRequestId()}
	case error:
		return map[string]interface{}{"type": "error", "error": m.Error()}
	default:
		return map[string]interface{}{"type": fmt.Sprintf("%T", d)}
	}
}

func call(conn *grpc.ClientConn, key string, timeout time.Duration) Result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var trailer metadata.MD
	out := new(wrapperspb.StringValue)
	err := conn.Invoke(ctx, "/test.Probe/Unary", &wrapperspb.StringValue{Value: key}, out, grpc.Trailer(&trailer))
	st, _ := status.FromError(err)
	res := Result{
		Key: key, Code: st.Code().String(), CodeNum: int(st.Code()), Message: st.Message(),
		Details: []map[string]interface{}{}, Pushback: trailer.Get("grpc-retry-pushback-ms"),
		Value: out.GetValue(),
	}
	for _, d := range st.Details() {
		res.Details = append(res.Details, describe(d))
	}
	return res
}

// retryConfig retries FAILED_PRECONDITION and UNAVAILABLE, so only the
// server's pushback can stop a terminal failure from being repeated.
const retryConfig = `{"methodConfig": [{"name": [{"service": "test.Probe"}], "retryPolicy": {
  "maxAttempts": 4, "initialBackoff": "0.01s", "maxBackoff": "0.05s", "backoffMultiplier": 2,
  "retryableStatusCodes": ["FAILED_PRECONDITION", "PERMISSION_DENIED", "UNAVAILABLE"]}}]}`

func client(args []string) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	addr := fs.String("addr", "", "host:port of the Python server")
	retry := fs.Bool("retry", false, "use a service config that retries FAILED_PRECONDITION and UNAVAILABLE")
	timeout := fs.Duration("timeout", 10*time.Second, "per-call deadline")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts := []grpc.DialOption{grpc.WithInsecure(), grpc.WithBlock()}
	if *retry {
		opts = append(opts, grpc.WithDefaultServiceConfig(retryConfig))
	} else {
		opts = append(opts, grpc.WithDisableRetry())
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	conn, err := grpc.DialContext(ctx, *addr, opts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	enc := json.NewEncoder(os.Stdout)
	for _, key := range fs.Args() {
		if err := enc.Encode(call(conn, key, *timeout)); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: peer server | peer client -addr HOST:PORT KEY...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "server":
		err = serve()
	case "client":
		err = client(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		os.Exit(1)
	}
}
