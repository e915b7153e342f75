#!/usr/bin/python3
"""An istiod stand-in on gRPC C-core (Debian's python3-grpcio), written for the fault tests.

It serves SotW ADS (StreamAggregatedResources) from a JSON file the test rewrites
({"<type_url>": {"version": "...", "resources": ["<base64 resource bytes>", ...]}}, polled every
50 ms), and exposes the C-core server behaviours istiod's grpc-go shares: GOAWAY after a maximum
connection age (istiod closes every connection after 30 minutes), and a keepalive ping policy that
answers too-frequent pings with GOAWAY ENHANCE_YOUR_CALM "too_many_pings".

The DiscoveryRequest/DiscoveryResponse fields it needs are read and written with a few lines of
protobuf wire format, so it needs no generated code. One line per event on stdout:
  listening <port> / stream open <peer> / response <type> <version> <nonce> / stream closed <peer>
"""

import argparse
import base64
import json
import os
import queue
import sys
import threading
import time
from concurrent import futures

import grpc

ADS_SOTW = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def read_varint(buf, pos):
    shift = value = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def fields(buf):
    """Yields (field number, wire type, value) of one message; value is bytes for length-delimited."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 2:
            size, pos = read_varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
        yield number, wire, value


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def length_delimited(number, data):
    return varint((number << 3) | 2) + varint(len(data)) + data


def discovery_request(buf):
    req = {"version_info": "", "type_url": "", "response_nonce": "", "error": False}
    for number, _wire, value in fields(buf):
        if number == 1:
            req["version_info"] = value.decode()
        elif number == 4:
            req["type_url"] = value.decode()
        elif number == 5:
            req["response_nonce"] = value.decode()
        elif number == 6:
            req["error"] = True
    return req


def discovery_response(type_url, version, resources, nonce):
    out = length_delimited(1, version.encode())
    for r in resources:
        any_msg = length_delimited(1, type_url.encode()) + length_delimited(2, r)
        out += length_delimited(2, any_msg)
    out += length_delimited(4, type_url.encode()) + length_delimited(5, nonce.encode())
    return out


class Resources:
    """The test's resource file, re-read when it changes."""

    def __init__(self, path):
        self.path = path
        self.mtime = None
        self.state = {}
        self.lock = threading.Lock()

    def current(self):
        with self.lock:
            try:
                mtime = os.stat(self.path).st_mtime_ns
            except FileNotFoundError:
                return self.state
            if mtime != self.mtime:
                with open(self.path) as f:
                    raw = json.load(f)
                self.state = {
                    t: (v["version"], [base64.b64decode(r) for r in v["resources"]]) for t, v in raw.items()
                }
                self.mtime = mtime
            return self.state


class Ads:
    def __init__(self, resources):
        self.resources = resources
        self.nonce = 0
        self.nonce_lock = threading.Lock()

    def next_nonce(self):
        with self.nonce_lock:
            self.nonce += 1
            return str(self.nonce)

    def stream(self, request_iterator, context):
        peer = context.peer()
        say("stream open %s" % peer)
        requests = queue.Queue()

        def pump():
            try:
                for r in request_iterator:
                    requests.put(r)
            except Exception:
                pass
            requests.put(None)

        threading.Thread(target=pump, daemon=True).start()
        subscribed = set()
        sent = {}
        try:
            while context.is_active():
                try:
                    raw = requests.get(timeout=0.05)
                    if raw is None:
                        return
                    req = discovery_request(raw)
                    if req["type_url"]:
                        subscribed.add(req["type_url"])
                except queue.Empty:
                    pass
                state = self.resources.current()
                for type_url in sorted(subscribed):
                    if type_url not in state:
                        continue
                    version, resources = state[type_url]
                    if sent.get(type_url) == version:
                        continue
                    nonce = self.next_nonce()
                    sent[type_url] = version
                    say("response %s %s %s" % (type_url.rsplit(".", 1)[-1], version, nonce))
                    yield discovery_response(type_url, version, resources, nonce)
        finally:
            say("stream closed %s" % peer)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--resources", required=True)
    p.add_argument("--max-connection-age-ms", type=int, default=0)
    p.add_argument("--max-connection-age-grace-ms", type=int, default=0)
    p.add_argument("--min-ping-interval-ms", type=int, default=0)
    p.add_argument("--max-ping-strikes", type=int, default=-1)
    a = p.parse_args()
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    if a.max_connection_age_ms:
        options.append(("grpc.max_connection_age_ms", a.max_connection_age_ms))
        options.append(("grpc.max_connection_age_grace_ms", a.max_connection_age_grace_ms))
    if a.min_ping_interval_ms:
        options.append(("grpc.http2.min_ping_interval_without_data_ms", a.min_ping_interval_ms))
    if a.max_ping_strikes >= 0:
        options.append(("grpc.http2.max_ping_strikes", a.max_ping_strikes))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=options)
    ads = Ads(Resources(a.resources))
    handler = grpc.method_handlers_generic_handler(
        "envoy.service.discovery.v3.AggregatedDiscoveryService",
        {"StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(ads.stream)},
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:%d" % a.port)
    server.start()
    say("listening %d" % port)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
