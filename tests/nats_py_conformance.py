#!/usr/bin/env python3
"""nats-py (the official Python client) against `acgs shim nats`.

Usage: python3 tests/nats_py_conformance.py PORT

Run by tests/shim_nats.rs, which starts the shim on 127.0.0.1:PORT. Each check prints one line
(`ok NAME` or `FAIL NAME: why`); the exit status is 0 when every check passed, 1 when one failed,
2 for a usage error or when nats-py is missing (scripts/test.sh installs it).
"""

import asyncio
import sys

try:
    import nats
    from nats.errors import NoRespondersError
except ImportError as e:  # pragma: no cover - reported to the Rust test
    print(f"nats-py is not importable ({e}); scripts/test.sh installs it (pip install nats-py)")
    sys.exit(2)

TIMEOUT = 10  # seconds, for anything that should happen at once


class CheckFailed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


async def connect(url, **kwargs):
    return await nats.connect(
        servers=[url], connect_timeout=TIMEOUT, allow_reconnect=False, max_reconnect_attempts=0, **kwargs
    )


async def check_info(url):
    nc = await connect(url)
    try:
        info = nc._server_info  # what the shim advertised in INFO
        expect(info.get("headers") is True, f"INFO headers: {info.get('headers')!r}")
        expect(info.get("proto") == 1, f"INFO proto: {info.get('proto')!r}")
        expect(info.get("max_payload") == 1024 * 1024, f"INFO max_payload: {info.get('max_payload')!r}")
        expect(info.get("server_id"), "INFO server_id is empty")
        expect(nc.max_payload == 1024 * 1024, f"client max_payload: {nc.max_payload}")
    finally:
        await nc.close()


async def check_pub_sub(url):
    nc = await connect(url)
    try:
        sub = await nc.subscribe("py.greet.joe")
        await nc.publish("py.greet.joe", b"hello joe")
        msg = await sub.next_msg(timeout=TIMEOUT)
        expect(msg.subject == "py.greet.joe", f"subject {msg.subject!r}")
        expect(msg.data == b"hello joe", f"payload {msg.data!r}")
        # An empty payload and a large one (just under max_payload) survive too.
        await nc.publish("py.greet.joe", b"")
        msg = await sub.next_msg(timeout=TIMEOUT)
        expect(msg.data == b"", f"empty payload came back as {msg.data!r}")
        big = bytes(range(256)) * 4000
        await nc.publish("py.greet.joe", big)
        msg = await sub.next_msg(timeout=TIMEOUT)
        expect(msg.data == big, f"large payload came back with {len(msg.data)} bytes")
    finally:
        await nc.close()


async def check_wildcards(url):
    nc = await connect(url)
    try:
        star = await nc.subscribe("py.wc.*")
        rest = await nc.subscribe("py.wc.>")
        for subject in ["py.wc.a", "py.wc.a.b", "py.other", "py.wc", "py.wc.end"]:
            await nc.publish(subject, subject.encode())
        got_star, got_rest = [], []
        while not got_star or got_star[-1] != "py.wc.end":
            got_star.append((await star.next_msg(timeout=TIMEOUT)).subject)
        while not got_rest or got_rest[-1] != "py.wc.end":
            got_rest.append((await rest.next_msg(timeout=TIMEOUT)).subject)
        expect(got_star == ["py.wc.a", "py.wc.end"], f"py.wc.* got {got_star}")
        expect(got_rest == ["py.wc.a", "py.wc.a.b", "py.wc.end"], f"py.wc.> got {got_rest}")
    finally:
        await nc.close()


async def check_queue_groups(url):
    members = [await connect(url), await connect(url)]
    pub = await connect(url)
    try:
        counts = [[], []]

        def collector(i):
            async def cb(msg):
                counts[i].append(int(msg.data))

            return cb

        for i, nc in enumerate(members):
            await nc.subscribe("py.jobs", queue="workers", cb=collector(i))
            await nc.flush()
        plain = await pub.subscribe("py.jobs")
        n = 200
        for i in range(n):
            await pub.publish("py.jobs", str(i).encode())
        await pub.flush()
        for _ in range(n):
            await plain.next_msg(timeout=TIMEOUT)
        for _ in range(TIMEOUT * 20):
            if len(counts[0]) + len(counts[1]) >= n:
                break
            await asyncio.sleep(0.05)
        everything = sorted(counts[0] + counts[1])
        expect(everything == list(range(n)), f"members got {len(everything)} messages, not each of {n} once")
        expect(counts[0] and counts[1], f"one member got nothing: {len(counts[0])} / {len(counts[1])}")
    finally:
        for nc in members + [pub]:
            await nc.close()


async def check_request_reply(url):
    responder = await connect(url)
    requester = await connect(url)
    try:
        async def echo(msg):
            await msg.respond(msg.data.upper())

        await responder.subscribe("py.svc.upper", cb=echo)
        await responder.flush()
        for word in [b"ping", b"governance", b""]:
            reply = await requester.request("py.svc.upper", word, timeout=TIMEOUT)
            expect(reply.data == word.upper(), f"reply {reply.data!r} to {word!r}")
    finally:
        await requester.close()
        await responder.close()


async def check_unsubscribe_max(url):
    listener = await connect(url)
    pub = await connect(url)
    try:
        sub = await listener.subscribe("py.limited")
        await sub.unsubscribe(limit=3)
        await listener.flush()  # the server has the limit before anything is published
        for i in range(5):
            await pub.publish("py.limited", str(i).encode())
        got = [(await sub.next_msg(timeout=TIMEOUT)).data for _ in range(3)]
        expect(got == [b"0", b"1", b"2"], f"got {got}")
        # The server itself dropped the subscription after three: nobody is left to answer.
        try:
            await pub.request("py.limited", b"anyone?", timeout=TIMEOUT)
            raise CheckFailed("a request after the limit was answered")
        except NoRespondersError:
            pass
    finally:
        await pub.close()
        await listener.close()


async def check_headers(url):
    nc = await connect(url)
    try:
        sub = await nc.subscribe("py.hdr")
        headers = {"X-Trace-Id": "abc-123", "Acgs-Hash": "cdd01ef066bc6cf2"}
        await nc.publish("py.hdr", b"with headers", headers=headers)
        msg = await sub.next_msg(timeout=TIMEOUT)
        expect(msg.data == b"with headers", f"payload {msg.data!r}")
        expect(msg.headers == headers, f"headers {msg.headers!r}")
        await nc.publish("py.hdr", b"", headers={"Only": "headers"})
        msg = await sub.next_msg(timeout=TIMEOUT)
        expect(msg.data == b"" and msg.headers == {"Only": "headers"}, f"{msg.data!r} {msg.headers!r}")

        async def echo_headers(m):
            await nc.publish(m.reply, m.data, headers={**(m.headers or {}), "Replied": "yes"})

        await nc.subscribe("py.hdr.svc", cb=echo_headers)
        reply = await nc.request("py.hdr.svc", b"q", timeout=TIMEOUT, headers={"Asked": "1"})
        expect(reply.headers == {"Asked": "1", "Replied": "yes"}, f"reply headers {reply.headers!r}")
    finally:
        await nc.close()


async def check_no_responders(url):
    nc = await connect(url)
    try:
        try:
            await nc.request("py.nobody.home", b"hello?", timeout=TIMEOUT)
            raise CheckFailed("a request to a subject without subscribers was answered")
        except NoRespondersError:
            pass
        # The connection is still usable afterwards.
        sub = await nc.subscribe("py.after")
        await nc.publish("py.after", b"still here")
        expect((await sub.next_msg(timeout=TIMEOUT)).data == b"still here", "publish after no-responders")
    finally:
        await nc.close()


async def check_no_echo(url):
    quiet = await connect(url, no_echo=True)
    other = await connect(url)
    try:
        sub = await quiet.subscribe("py.echo")
        await quiet.flush()
        await quiet.publish("py.echo", b"mine")
        await quiet.flush()
        await other.publish("py.echo", b"theirs")
        msg = await sub.next_msg(timeout=TIMEOUT)
        expect(msg.data == b"theirs", f"a no-echo client got {msg.data!r} first")
    finally:
        await other.close()
        await quiet.close()


CHECKS = [
    check_info,
    check_pub_sub,
    check_wildcards,
    check_queue_groups,
    check_request_reply,
    check_unsubscribe_max,
    check_headers,
    check_no_responders,
    check_no_echo,
]


async def main(port):
    url = f"nats://127.0.0.1:{port}"
    failed = 0
    for check in CHECKS:
        name = check.__name__.removeprefix("check_")
        try:
            await asyncio.wait_for(check(url), 60)
            print(f"ok {name}", flush=True)
        except Exception as e:  # every failure is reported, then counted
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
    print(f"nats-py conformance: {len(CHECKS) - failed} of {len(CHECKS)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        print(__doc__)
        sys.exit(2)
    sys.exit(asyncio.run(main(int(sys.argv[1]))))
