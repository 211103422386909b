"""``release-hold`` against a real etcd: it names every other standing hold still over the runs it held (id, what it
covers, the DAGs both cover) and says those stay held; with none in the way it says each held run starts once."""

from __future__ import annotations

from typer.testing import CliRunner

from coordinator.cli import incident_cmds  # registers `hold` and `release-hold` on the app
from tests.test_holds_status_release import P2, P, cli, hold, run

assert incident_cmds and cli  # cli: the fixture, shared with the status tests


def test_release_names_the_other_holds_still_in_the_way(cli: CliRunner) -> None:
    """Releasing a hold on a for P while a --downstream hold on r stands says that hold still holds a (id, selector,
    range) and those runs stay held; a hold of a on another partition is not named; the last release names none."""
    first = hold(cli, "a", "--from", P, "--to", P, "--reason", "bad data in a")
    above = hold(cli, "r", "--downstream", "--reason", "bad data in r")
    elsewhere = hold(cli, "a", "--from", P2, "--to", P2, "--reason", "another day")
    released = run(cli, "release-hold", first).stdout
    assert "except the runs another hold still holds" in released, released
    said = " ".join(released.split())
    assert (f"hold {above} (r and every DAG below, every partition, by alice: bad data in r) still holds a: those "
            f"runs stay held until `coordinator release-hold {above}`") in said, released  # fmt: skip
    assert elsewhere not in released
    assert f"hold {above} (" in run(cli, "release-hold", elsewhere).stdout
    last = run(cli, "release-hold", above).stdout
    assert "the leading watcher starts each run it held, once" in last and "still holds" not in last, last
