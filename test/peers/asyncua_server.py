"""A second, independent OPC-UA server (asyncua, from PyPI) for Vigil's interoperability tests.

Started by test/adapters/opcua/asyncua.test.ts with the peers' virtual environment. It serves, in
namespace `urn:vigil:peer`:

  Objects/Plant/line-1/
    temperature  Double  ns=<i>;s=line-1.temperature  20 + 5 sin(t), rewritten every 100 ms
    counter      Double  ns=<i>;s=line-1.counter      +1 every 100 ms
    broken       Double  ns=<i>;s=line-1.broken       status BadSensorFailure, no value
    stale        Double  ns=<i>;s=line-1.stale        status UncertainLastUsableValue, value 7.5

with source timestamps set by the server when it writes. Options:

  --port N                 TCP port on 127.0.0.1; 0 (the default) lets the OS pick a free one, and
                           READY says which: no window in which another process could take it
  --security LIST          endpoints offered, comma-separated: None, SignAndEncrypt (default None)
  --cert FILE --key FILE   PEM certificate and key, for SignAndEncrypt (Basic256Sha256)
  --user NAME --password P only this user may log in (no anonymous sessions)

Prints `READY <endpoint> <namespace index>` on stdout once it listens (the endpoint with the port it
really listens on), and stops when stdin is closed (so it never outlives the test that started it)
or on SIGTERM.
"""

import argparse
import asyncio
import logging
import math
import signal
import sys
import time
from datetime import datetime, timezone

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole

NAMESPACE = "urn:vigil:peer"


class OneUser:
    def __init__(self, name: str, password: str) -> None:
        self.name = name
        self.password = password

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username == self.name and password == self.password:
            return User(role=UserRole.User, name=username)
        return None


async def wait_for_stdin_eof() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--security", default="None")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()

    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    user_manager = OneUser(args.user, args.password or "") if args.user else None
    server = Server(user_manager=user_manager)
    await server.init()
    endpoint = f"opc.tcp://127.0.0.1:{args.port}/"
    server.set_endpoint(endpoint)
    server.set_server_name("Vigil asyncua peer")
    await server.set_application_uri(NAMESPACE)
    modes = {m.strip() for m in args.security.split(",")}
    policies = []
    if "None" in modes:
        policies.append(ua.SecurityPolicyType.NoSecurity)
    if "SignAndEncrypt" in modes:
        if not args.cert or not args.key:
            parser.error("SignAndEncrypt needs --cert and --key")
        await server.load_certificate(args.cert)
        await server.load_private_key(args.key)
        policies.append(ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt)
    server.set_security_policy(policies)
    if user_manager:
        server.set_identity_tokens([ua.UserNameIdentityToken])
    else:
        server.set_identity_tokens([ua.AnonymousIdentityToken])

    idx = await server.register_namespace(NAMESPACE)
    plant = await server.nodes.objects.add_folder(ua.NodeId("Plant", idx), "Plant")
    line = await plant.add_object(ua.NodeId("line-1", idx), "line-1")

    async def variable(name: str, value: float):
        return await line.add_variable(
            ua.NodeId(f"line-1.{name}", idx), name, ua.Variant(value, ua.VariantType.Double)
        )

    temperature = await variable("temperature", 20.0)
    counter = await variable("counter", 0.0)
    broken = await variable("broken", 0.0)
    stale = await variable("stale", 7.5)

    async def write(node, value, status=ua.StatusCodes.Good):
        stamp = datetime.now(timezone.utc)
        variant = ua.Variant(value, ua.VariantType.Double) if value is not None else ua.Variant()
        await node.write_value(
            ua.DataValue(variant, StatusCode=ua.StatusCode(status), SourceTimestamp=stamp, ServerTimestamp=stamp)
        )

    async with server:
        await write(broken, None, ua.StatusCodes.BadSensorFailure)
        await write(stale, 7.5, ua.StatusCodes.UncertainLastUsableValue)
        # The port the socket is bound to: the one asked for, or the OS's pick for port 0. Clients
        # may still use the endpoint URL with it: asyncua answers GetEndpoints with the URL the
        # client asked on.
        port = server.bserver.port if server.bserver else args.port
        print(f"READY opc.tcp://127.0.0.1:{port}/ {idx}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        eof = asyncio.ensure_future(wait_for_stdin_eof())
        eof.add_done_callback(lambda _f: stop.set())
        n = 0
        start = time.monotonic()
        while not stop.is_set():
            n += 1
            await write(temperature, 20.0 + 5.0 * math.sin(time.monotonic() - start))
            await write(counter, float(n))
            try:
                await asyncio.wait_for(stop.wait(), 0.1)
            except asyncio.TimeoutError:
                pass


if __name__ == "__main__":
    asyncio.run(main())
