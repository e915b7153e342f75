# A proxyless gRPC client in Python (Debian's python3-grpcio, gRPC C-core's xDS resolver): resolves
# an xds:/// target with the bootstrap in GRPC_XDS_BOOTSTRAP (written by the agent) through the
# agent's xDS socket. Prints one line per RPC. Usage: python3 python_grpc_client.py <target> <n>
import sys

import grpc

target, count = sys.argv[1], int(sys.argv[2])
with grpc.insecure_channel(target) as channel:
    say_hello = channel.unary_unary(
        "/hello.Greeter/SayHello",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    for i in range(count):
        reply = say_hello(("hello %d" % i).encode(), timeout=30)
        print(reply.decode(), flush=True)
