"""testing/faults.py: the fault plan serves scheduled faults in order, per path, and seeded draws replay."""

from __future__ import annotations

from airflow_provider_openai_usage.testing.faults import Fault, FaultPlan, status


def test_scheduled_faults_are_served_once_in_order_and_pass_lets_one_request_through():
    plan = FaultPlan()
    plan.schedule([Fault("pass"), status(503, retry_after=2), Fault("drop")])
    assert plan.pending == 3
    served = [plan.next_for("/organization/costs") for _ in range(4)]
    assert served[0] is None, "'pass' consumes a request without a fault"
    assert served[1] == status(503, retry_after=2) and served[1].describe() == "503 retry-after=2"
    assert served[2] is not None and served[2].kind == "drop"
    assert served[3] is None and plan.pending == 0


def test_a_fault_with_a_path_waits_for_a_request_to_that_path():
    plan = FaultPlan()
    plan.schedule([status(500, path="/usage/images")])
    assert plan.next_for("/organization/costs") is None and plan.pending == 1
    assert plan.next_for("/organization/usage/images") == status(500, path="/usage/images")
    assert plan.pending == 0


def test_seeded_rate_replays_exactly_and_clear_stops_it():
    def draws(seed: int) -> list[str | None]:
        plan = FaultPlan()
        plan.at_rate(0.5, [status(500), Fault("slow", delay=0.1)], seed=seed)
        return [f.describe() if (f := plan.next_for("/x")) else None for _ in range(40)]

    first = draws(3)
    assert first == draws(3), "the same seed serves the same faults"
    assert 5 < sum(f is not None for f in first) < 35, "about half the requests fail"
    assert {"500", "slow 0.1s"} == {f for f in first if f}
    plan = FaultPlan()
    plan.at_rate(1.0, [status(500)])
    plan.clear()
    assert plan.next_for("/x") is None


def test_a_fault_with_params_waits_for_a_request_carrying_them():
    plan = FaultPlan()
    aimed = Fault("gap", params=(("start_time", "200"),))
    plan.schedule([aimed])
    assert plan.next_for("/organization/costs", [("start_time", "100"), ("limit", "31")]) is None and plan.pending == 1
    assert plan.next_for("/organization/costs") is None, "a request without the parameter is not aimed at"
    assert plan.next_for("/organization/costs", [("start_time", "200"), ("limit", "31")]) == aimed
    assert plan.pending == 0


def test_a_fault_with_a_key_waits_for_a_request_carrying_that_key():
    plan = FaultPlan()
    aimed = status(429, retry_after=1, key="sk-admin-second")
    plan.schedule([aimed, status(503)])
    assert plan.next_for("/organization/costs", key="sk-admin-first") == status(503), "the unaimed fault behind it is served"
    assert plan.next_for("/organization/costs") is None and plan.pending == 1, "no key: not aimed at"
    assert plan.next_for("/organization/costs", key="sk-admin-second") == aimed and plan.pending == 0
    assert "sk-admin-second" not in aimed.describe() + repr(aimed), "nothing that is logged or printed holds the key"


def test_a_rate_aimed_at_one_key_replays_whatever_other_keys_send():
    def storm(interleaved: int) -> list[str | None]:
        plan = FaultPlan()
        plan.at_rate(0.5, [status(429, key="sk-admin-second"), Fault("drop", key="sk-admin-second")], seed=4)
        seen = []
        for _ in range(30):
            for _ in range(interleaved):
                assert plan.next_for("/x", key="sk-admin-first") is None, "another key is never hit"
            seen.append(f.describe() if (f := plan.next_for("/x", key="sk-admin-second")) else None)
        return seen

    alone = storm(0)
    assert alone == storm(3), "the other key's requests do not move the seeded draws"
    assert 5 < sum(f is not None for f in alone) < 25 and {"429", "drop"} == {f for f in alone if f}
