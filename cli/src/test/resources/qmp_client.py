#!/usr/bin/env python3
"""A QMP client written from QEMU's QMP specification alone (docs/interop/qmp-spec.txt, QEMU 7.2), with the
Python 3 standard library only. It knows nothing of Ferry: the VM-tier tests (ferry.cli.QmpFaceIT) run it
against plain QEMU and against Ferry's QMP server and compare what it prints.

    qmp_client.py steps SERVER           the protocol steps below; prints the shape of every reply (JSON)
    qmp_client.py incoming SERVER URI    on a destination started with -incoming defer: migrate-incoming URI
    qmp_client.py migrate SERVER URI     migrates with block copy and follows the migration by events alone;
                                         prints what it saw (JSON); exit status 0 only if it completed

SERVER is a unix socket path or tcp:HOST:PORT.

What the specification says, and this client checks:
  2.2   the server greets: {"QMP": {"version": json-object, "capabilities": json-array}}
  2.3   issuing commands: {"execute": json-string, "arguments": json-object, "id": json-value}
  2.4.1 success: {"return": json-value, "id": json-value}, the id as given
  2.4.2 error: {"error": {"class": json-string, "desc": json-string}, "id": json-value}
  2.5   asynchronous events: {"event": json-string, "data": json-object,
        "timestamp": {"seconds": json-number, "microseconds": json-number}}
  4     capabilities negotiation: until "qmp_capabilities", any other command fails with CommandNotFound;
        an unknown command fails with CommandNotFound too
Commands used (qapi/control.json, run-state.json, misc.json, migration.json): qmp_capabilities,
query-status, stop, cont, query-version, query-name, query-migrate, migrate-set-capabilities, migrate,
migrate-incoming.
"""
import json
import socket
import sys
import time


class ProtocolError(Exception):
    pass


class Client:
    def __init__(self, server, timeout):
        if server.startswith("tcp:"):
            host, port = server[4:].rsplit(":", 1)
            self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(server)
        self.decoder = json.JSONDecoder()
        self.buffer = ""
        self.events = []
        self.next_id = 0

    def receive(self):
        """The next JSON object from the server, however its bytes arrive."""
        while True:
            text = self.buffer.lstrip()
            if text:
                try:
                    value, end = self.decoder.raw_decode(text)
                    self.buffer = text[end:]
                    if not isinstance(value, dict):
                        raise ProtocolError("the server sent a JSON value that is not an object: %r" % (value,))
                    return value
                except json.JSONDecodeError:
                    pass                          # incomplete: read more
            data = self.sock.recv(65536)
            if not data:
                raise ProtocolError("the server closed the connection")
            self.buffer += data.decode("utf-8")

    def send(self, message):
        self.sock.sendall((json.dumps(message) + "\n").encode("utf-8"))

    def reply_to(self, request_id):
        """Reads until the reply carrying request_id; events read on the way are kept, in order."""
        while True:
            message = self.receive()
            if "event" in message:
                check_event(message)
                self.events.append(message)
                continue
            if "return" not in message and "error" not in message:
                raise ProtocolError("neither a reply nor an event: %r" % (message,))
            if message.get("id") != request_id:
                raise ProtocolError("reply id %r, expected %r: %r" % (message.get("id"), request_id, message))
            if "error" in message:
                error = message["error"]
                if not isinstance(error.get("class"), str) or not isinstance(error.get("desc"), str):
                    raise ProtocolError("an error without a string class and desc: %r" % (message,))
            return message

    def execute(self, command, arguments=None, request_id=None):
        """Sends a command with an id (a fresh one unless given) and returns its reply."""
        if request_id is None:
            self.next_id += 1
            request_id = "client-%d" % self.next_id
        message = {"execute": command, "id": request_id}
        if arguments is not None:
            message["arguments"] = arguments
        self.send(message)
        return self.reply_to(request_id)

    def event(self, name, timeout):
        """Waits for the event `name` (one already received counts); returns it."""
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event["event"] == name:
                    return self.events.pop(i)
            if time.monotonic() > deadline:
                raise ProtocolError("no %s event within %s s" % (name, timeout))
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            message = self.receive()
            if "event" not in message:
                raise ProtocolError("a reply nobody asked for: %r" % (message,))
            check_event(message)
            self.events.append(message)


def check_event(message):
    if not isinstance(message.get("event"), str):
        raise ProtocolError("an event without a string name: %r" % (message,))
    stamp = message.get("timestamp")
    if not isinstance(stamp, dict) or not all(isinstance(stamp.get(k), int) for k in ("seconds", "microseconds")):
        raise ProtocolError("an event without a timestamp of seconds and microseconds: %r" % (message,))
    if "data" in message and not isinstance(message["data"], dict):
        raise ProtocolError("an event whose data is not an object: %r" % (message,))


def shape(value):
    """A value's structure: object keys and JSON types, not the values themselves."""
    if isinstance(value, dict):
        return {key: shape(member) for key, member in sorted(value.items())}
    if isinstance(value, list):
        elements = []
        for element in value:
            s = shape(element)
            if s not in elements:
                elements.append(s)
        return {"array": elements}
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null"


def expect_error(reply, error_class, what):
    if "error" not in reply or reply["error"]["class"] != error_class:
        raise ProtocolError("%s: expected error class %s, got %r" % (what, error_class, reply))


def steps(server):
    client = Client(server, timeout=30)
    out = {}
    greeting = client.receive()
    if "QMP" not in greeting or not isinstance(greeting["QMP"].get("version"), dict) \
            or not isinstance(greeting["QMP"].get("capabilities"), list):
        raise ProtocolError("not a QMP greeting: %r" % (greeting,))
    out["greeting"] = shape(greeting)

    early = client.execute("query-status", request_id=1)
    expect_error(early, "CommandNotFound", "a command before capabilities negotiation")
    out["before-negotiation"] = shape(early)

    negotiated = client.execute("qmp_capabilities", request_id="negotiate")
    if negotiated.get("return") != {}:
        raise ProtocolError("qmp_capabilities: %r" % (negotiated,))
    out["qmp_capabilities"] = shape(negotiated)

    odd_id = {"any": ["json", 1, None, True]}
    status = client.execute("query-status", request_id=odd_id)
    out["query-status"] = shape(status)

    unknown = client.execute("x-no-such-command", request_id=[7])
    expect_error(unknown, "CommandNotFound", "an unknown command")
    out["unknown-command"] = shape(unknown)

    again = client.execute("qmp_capabilities")
    expect_error(again, "CommandNotFound", "qmp_capabilities after negotiation")
    out["qmp_capabilities-again"] = shape(again)

    out["stop"] = shape(client.execute("stop"))
    out["stop-event"] = shape(client.event("STOP", 30))
    stopped = client.execute("query-status")
    if stopped["return"]["running"]:
        raise ProtocolError("running after STOP: %r" % (stopped,))
    out["query-status-stopped"] = shape(stopped)
    out["cont"] = shape(client.execute("cont"))
    out["resume-event"] = shape(client.event("RESUME", 30))

    out["query-version"] = shape(client.execute("query-version"))
    out["query-name"] = shape(client.execute("query-name"))
    out["query-migrate"] = shape(client.execute("query-migrate"))
    out["migrate-set-capabilities"] = shape(client.execute("migrate-set-capabilities",
                                                           {"capabilities": [{"capability": "events", "state": True}]}))
    print(json.dumps(out, indent=1, sort_keys=True))
    return 0


def migrate(server, uri, timeout):
    client = Client(server, timeout=30)
    client.receive()                                   # the greeting
    client.execute("qmp_capabilities")
    for reply in (client.execute("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]}),
                  client.execute("migrate", {"uri": uri, "blk": True})):
        if "error" in reply:
            raise ProtocolError("refused: %r" % (reply,))
    statuses = []
    passes = 0
    seen = []
    deadline = time.monotonic() + timeout
    while not statuses or statuses[-1] not in ("completed", "failed", "cancelled"):
        if time.monotonic() > deadline:
            raise ProtocolError("the migration did not end within %s s; statuses so far %r" % (timeout, statuses))
        if client.events:
            event = client.events.pop(0)
        else:
            client.sock.settimeout(max(0.1, deadline - time.monotonic()))
            event = client.receive()
            if "event" not in event:
                raise ProtocolError("a reply nobody asked for: %r" % (event,))
            check_event(event)
        seen.append(event["event"])
        if event["event"] == "MIGRATION":
            statuses.append(event["data"]["status"])
        elif event["event"] == "MIGRATION_PASS":
            passes += 1
    final = client.execute("query-migrate")["return"]
    print(json.dumps({"statuses": statuses, "passes": passes, "events": seen, "query-migrate": final}, indent=1))
    return 0 if statuses[-1] == "completed" else 1


def incoming(server, uri):
    client = Client(server, timeout=30)
    client.receive()                                   # the greeting
    client.execute("qmp_capabilities")
    status = client.execute("query-status")["return"]
    if status["status"] != "inmigrate":
        raise ProtocolError("not waiting for an incoming migration: %r" % (status,))
    reply = client.execute("migrate-incoming", {"uri": uri})
    if "error" in reply:
        raise ProtocolError("migrate-incoming refused: %r" % (reply,))
    print(json.dumps(reply))
    return 0


def main(argv):
    if len(argv) >= 3 and argv[1] == "steps":
        return steps(argv[2])
    if len(argv) >= 4 and argv[1] == "incoming":
        return incoming(argv[2], argv[3])
    if len(argv) >= 4 and argv[1] == "migrate":
        return migrate(argv[2], argv[3], float(argv[4]) if len(argv) > 4 else 120)
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (ProtocolError, OSError) as e:
        sys.stderr.write("qmp_client: %s\n" % (e,))
        sys.exit(1)
