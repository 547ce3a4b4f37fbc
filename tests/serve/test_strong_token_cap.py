"""A per-request ``max_strong_tokens`` reaches a router that plans with it, and only such a router."""

from __future__ import annotations

import json
from typing import ClassVar

import openai

from tests.serve._server import Upstreams, serving, serving_routers
from trim_pomdp.routers.spec import RouterSpec
from trim_pomdp.serve.config import ServedRouter

QUESTION = [{"role": "user", "content": "What is 1 + 2?"}]  # the weak model errs at step 2 (PRM score 0.1)


class BudgetThr:
    """Regenerates below k while its budget covers a strong step's expected 14 tokens (a stand-in planner)."""

    loads: ClassVar[list[int | None]] = []

    def __init__(self, k: float, max_strong_tokens: int | None = None) -> None:
        self.k, self.max_strong_tokens = k, max_strong_tokens
        self.last_decision: dict = {}

    @classmethod
    def load(cls, directory, max_strong_tokens: int | None = None) -> BudgetThr:
        cls.loads.append(max_strong_tokens)
        return cls(json.loads((directory / "router.json").read_text())["k"], max_strong_tokens)

    def reset(self) -> None:
        self.left = self.max_strong_tokens

    def decide(self, obs) -> str:
        affordable = self.left is None or self.left >= 14
        self.last_decision = {"budget_left": self.left}
        if obs.score < self.k and affordable:
            self.left = None if self.left is None else self.left - 14
            return "regenerate"
        return "continue"


def _served(tmp_path) -> ServedRouter:
    (tmp_path / "router.json").write_text('{"k": 0.5}')
    spec = RouterSpec("route", "thr", 0.5, lambda: BudgetThr.load(tmp_path), "budget-thr")
    return ServedRouter(spec, source=tmp_path, model="budget-thr")


def test_the_cap_reaches_a_router_that_plans_with_it(tmp_path):
    served = _served(tmp_path)
    assert served.supports_cap and served.describe()["max_strong_tokens"] is True
    with Upstreams() as ups, serving_routers(ups.config(), {"budget-thr": served}) as srv:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        free = c.chat.completions.create(model="budget-thr", messages=QUESTION)
        assert free.usage.model_extra["strong_tokens"] > 0 and free.model_extra["trim"]["answer"] == "3"
        BudgetThr.loads.clear()
        for _ in range(2):
            capped = c.chat.completions.create(
                model="budget-thr", messages=QUESTION, extra_body={"max_strong_tokens": 10}
            )
            assert capped.usage.model_extra["strong_tokens"] == 0  # 10 tokens buy no strong step
            assert capped.model_extra["trim"]["answer"] == "4"
        assert BudgetThr.loads == [10]  # one capped prototype per cap, copied per request
        enough = c.chat.completions.create(
            model="budget-thr", messages=QUESTION, extra_body={"max_strong_tokens": 20}
        )
        assert enough.usage.model_extra["strong_tokens"] > 0
        streamed = list(
            c.chat.completions.create(
                model="budget-thr", messages=QUESTION, stream=True, extra_body={"max_strong_tokens": 10}
            )
        )
        actions = [ch.model_extra["trim_step"]["action"] for ch in streamed if "trim_step" in ch.model_extra]
        assert actions == ["continue", "continue", "continue"]


def test_capped_prototypes_are_bounded(tmp_path):
    served = _served(tmp_path)
    for n in range(1, 40):
        served.capped(n)
    assert len(served._capped) == 16


def _policy_dir(tmp_path):
    from tests._support.toys import small_trim
    from trim_pomdp.pomdp import solve_trim

    solve_trim(small_trim()).save(tmp_path / "policy")
    return tmp_path / "policy"


def test_belief_router_plans_with_the_cap_of_each_request(tmp_path):
    d = _policy_dir(tmp_path)
    with Upstreams() as ups, serving(ups.config((str(d),))) as srv:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        (entry,) = c.models.list().data
        model = entry.id
        assert (
            model.startswith("trim-pomdp/lambda=") and entry.model_extra["trim"]["max_strong_tokens"] is True
        )
        free = c.chat.completions.create(model=model, messages=QUESTION)
        assert "belief" in free.model_extra["trim"]["steps"][0]
        assert free.usage.model_extra["strong_tokens"] > 0  # the uncapped policy regenerates the bad step
        tight = c.chat.completions.create(model=model, messages=QUESTION, extra_body={"max_strong_tokens": 1})
        assert tight.usage.model_extra["strong_tokens"] == 0  # one token buys no strong step: none planned
        steps = tight.model_extra["trim"]["steps"]
        assert [s["action"] for s in steps] == ["continue"] * len(steps)
        assert steps[0]["strong_tokens_left"] == 1
        roomy = c.chat.completions.create(
            model=model, messages=QUESTION, extra_body={"max_strong_tokens": 500}
        )
        assert 0 < roomy.usage.model_extra["strong_tokens"] <= 500


def test_requests_with_one_new_cap_at_once_share_one_solve(tmp_path):
    import threading
    import time

    served = _served(tmp_path)
    solve = served._make_capped
    served._make_capped = lambda n: (time.sleep(0.2), solve(n))[1]  # a solve takes a while
    BudgetThr.loads.clear()
    got: list = []
    threads = [threading.Thread(target=lambda: got.append(served.capped(33))) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert BudgetThr.loads == [33] and len({id(r) for r in got}) == 6  # one load, a copy per request
