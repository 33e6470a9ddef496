from tests.support.servers import LiveServer


async def test_noop_runs_through_five_transitions(server: LiveServer) -> None:
    task = await server.create("demo.noop")
    done = await server.wait_for(task["id"])
    assert done["state"] == "completed"
    rows = await server.transitions(task["id"])
    assert [(r["from_state"], r["to_state"]) for r in rows] == [
        (None, "queued"),
        ("queued", "preparing"),
        ("preparing", "running"),
        ("running", "collecting"),
        ("collecting", "completed"),
    ]
