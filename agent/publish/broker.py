"""A local MQTT broker for `agent demo` and tests: mosquitto when installed, else amqtt in-process.

``start_local_broker()`` returns a running :class:`LocalBroker` on 127.0.0.1 and a free port. The
mosquitto binary is looked up on PATH and at /usr/sbin/mosquitto; without it an amqtt broker (pure
Python, MQTT 3.1.1 only) runs in a background thread with its own asyncio loop.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.errors import PublishError

log = logging.getLogger(__name__)
BrokerKind = Literal["auto", "mosquitto", "amqtt"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


def wait_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass
class LocalBroker:
    """A broker this process started; ``stop()`` ends it (also on context exit)."""

    kind: str
    host: str
    port: int
    _proc: subprocess.Popen[bytes] | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _amqtt: Any = None
    _stopped: bool = field(default=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._loop is not None and self._amqtt is not None:
            fut = asyncio.run_coroutine_threadsafe(self._amqtt.shutdown(), self._loop)
            try:
                fut.result(10)
            except Exception as exc:  # the broker is going away either way; say why
                log.warning("amqtt broker shutdown reported: %s", exc)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        if self._tmp is not None:
            self._tmp.cleanup()
        log.info("local %s broker on %s stopped", self.kind, self.address)

    def __enter__(self) -> LocalBroker:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def start_local_broker(
    kind: BrokerKind = "auto", host: str = "127.0.0.1", port: int | None = None
) -> LocalBroker:
    """Start mosquitto (``auto`` when installed) or an in-process amqtt broker on a loopback port."""
    port = port or free_port(host)
    exe = mosquitto_binary()
    if kind == "mosquitto" or (kind == "auto" and exe):
        if not exe:
            raise PublishError(
                "mosquitto is not installed", fix="apt-get install mosquitto, or use kind='amqtt'"
            )
        return _start_mosquitto(exe, host, port)
    return _start_amqtt(host, port)


def _start_mosquitto(exe: str, host: str, port: int) -> LocalBroker:
    tmp = tempfile.TemporaryDirectory(prefix="lews-broker-")
    conf = Path(tmp.name) / "mosquitto.conf"
    conf.write_text(f"listener {port} {host}\nallow_anonymous true\npersistence false\nlog_dest none\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    broker = LocalBroker("mosquitto", host, port, _proc=proc, _tmp=tmp)
    if not wait_port(host, port, 10.0):
        broker.stop()
        raise PublishError(
            f"mosquitto did not open {host}:{port}", fix="check `mosquitto -v` runs on this machine"
        )
    log.info("local mosquitto broker on %s:%d", host, port)
    return broker


def _start_amqtt(host: str, port: int) -> LocalBroker:
    try:
        from amqtt.broker import Broker
    except ImportError as exc:
        raise PublishError(
            "neither mosquitto nor the amqtt package is available for a local broker",
            fix="apt-get install mosquitto, or pip install amqtt==0.12.1, or pass --broker HOST:PORT",
        ) from exc
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            try:
                broker = Broker(config, loop=loop)
                await broker.start()
                holder["broker"] = broker
            except Exception as exc:  # reported to the starting thread below
                holder["error"] = exc
            finally:
                started.set()

        holder["boot"] = loop.create_task(boot())
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name="amqtt-broker", daemon=True)
    thread.start()
    if not started.wait(15) or "broker" not in holder:
        loop.call_soon_threadsafe(loop.stop)
        raise PublishError(
            f"embedded amqtt broker could not start on {host}:{port}: {holder.get('error', 'timeout')}",
            fix="pass --broker HOST:PORT to use an existing broker",
        )
    log.info("local amqtt broker (in-process) on %s:%d", host, port)
    return LocalBroker("amqtt", host, port, _loop=loop, _thread=thread, _amqtt=holder["broker"])
