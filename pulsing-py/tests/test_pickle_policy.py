"""Pickle runs code on load: pickled objects cross processes only between nodes that proved a
shared cluster secret. A peer without it — or with a wrong one — never gets a payload unpickled.
"""

import os
import pickle

import pytest

import pulsing as pul
from cluster_actors import Point, Worker
from conftest import RUST_CALLER, Proc


class _Bomb:
    """Unpickling it runs a shell command that creates ``path``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize(
    "node_secret, attacker_secret, runs",
    [
        (None, None, False),  # the seed's own `pul.init(addr=...)`: no secret anywhere
        ("right", "wrong", False),  # a stranger who guesses: the handshake refuses it
        ("right", None, False),  # a stranger with no secret at all
        ("right", "right", True),  # control: a peer that proved the secret is trusted
    ],
)
async def test_a_pickle_bomb_from_a_peer_runs_only_if_the_peer_proved_the_secret(
    py_node, tmp_path, node_secret, attacker_secret, runs
):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Bomb(str(marker))).hex()
    node_args = ["--spawn", "worker", "--name", "victim"]
    if node_secret:
        node_args += ["--secret", node_secret]
    node = py_node(*node_args)
    assert RUST_CALLER.exists(), "build it: cargo build --release --example rust_caller"
    argv = [str(RUST_CALLER), "--seed", node.addr, "--target", "worker", "--pickle", payload]
    if attacker_secret:
        argv += ["--secret", attacker_secret]
    attacker = Proc(argv)
    try:
        lines = await attacker.read_until("DONE", timeout=30)
    finally:
        attacker.stop()
    # The answer (or the refusal) comes after the victim did whatever unpickling does.
    assert marker.exists() == runs, lines
    if not runs:
        assert any(line.startswith("ERR") for line in lines), lines
    if node_secret is None:
        assert any("refused to unpickle" in line for line in lines), lines


async def test_without_a_secret_only_plain_values_cross_processes(py_node, cluster_system):
    seed = py_node("--spawn", "worker", "--name", "seed")
    await pul.init(addr="127.0.0.1:0", seeds=[seed.addr])
    worker = await Worker.resolve("worker", timeout=10)
    plain = {"n": None, "b": True, "i": 3, "f": 1.5, "s": "x", "by": b"\x00", "l": [1, (2, 3)]}
    assert await worker.echo(plain) == {**plain, "l": [1, [2, 3]]}
    with pytest.raises(pul.PulsingPickleError, match="Point.*cluster secret"):
        await worker.point(Point(1, 2))
    # An error is a PulsingDecodeError too, and the call never left: the worker is fine.
    with pytest.raises(pul.PulsingDecodeError):
        await worker.echo({1, 2})
    # A result that would need pickle is refused on the other side, with the same advice.
    with pytest.raises(pul.PulsingDecodeError, match="cluster secret"):
        await worker.fraction()
    assert await worker.process("after") == "seed processed after"


async def test_with_a_secret_any_picklable_object_crosses(py_node, cluster_system):
    seed = py_node("--spawn", "worker", "--name", "seed", "--secret", "s")
    await pul.init(addr="127.0.0.1:0", seeds=[seed.addr], secret="s")
    worker = await Worker.resolve("worker", timeout=10)
    assert await worker.point(Point(1, 2)) == Point(2, 4)
    assert await worker.echo({1, 2}) == {1, 2}


async def test_calls_within_one_process_never_pickle(cluster_system):
    await pul.init()
    worker = await Worker.spawn("local", name="local-worker")
    assert await worker.point(Point(1, 2)) == Point(2, 4)
    same = await Worker.resolve("local-worker")
    assert await same.point(Point(3, 4)) == Point(6, 8)
