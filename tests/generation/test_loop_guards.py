"""What the loop does with what real small models do: repeat themselves, loop, run out of budget or context."""

from __future__ import annotations

import asyncio

import pytest

from tests._support.servers.fake import FakePRMBackend
from trim_pomdp.generation import BatchedPRM, LoopConfig, Problem, StepResult, solve_problem
from trim_pomdp.generation.backends._common import ContextFullError
from trim_pomdp.generation.base import ends_solution
from trim_pomdp.generation.guards import degenerate, step_key
from trim_pomdp.routers.threshold import ThresholdRouter

P = Problem("q", "What is 4 + 5?", "9")


class Script:
    """A step generator that says what it is told, step after step (the last line repeats)."""

    def __init__(self, texts, name="weak", finish="step"):
        self.texts, self.model, self.finish = list(texts), name, finish
        self.budgets: list[int | None] = []

    def cache_params(self):
        return {}

    async def generate_step(self, problem, steps, *, max_tokens=None):
        self.budgets.append(max_tokens)
        text = self.texts[min(len(steps), len(self.texts) - 1)]
        if isinstance(text, BaseException):
            raise text
        final = ends_solution(text, self.finish)
        return StepResult(
            text=text, tokens=len(text.split()), finish=self.finish, final=final, model=self.model
        )

    async def aclose(self):
        return None


def solve(weak, strong=None, router=None, prm=None, **config):
    mode = config.pop("mode", "weak" if router is None else "route")
    cfg = LoopConfig(mode=mode, policy=mode, **config)
    return asyncio.run(solve_problem(P, weak, strong, prm, router, cfg))


def test_a_step_that_repeats_its_predecessor_stops_the_problem():
    # SmolLM2 on llama.cpp: "The answer is 150." again and again after the solution had ended
    weak = Script(["Step 1: 4 + 5 = 9.", "Step 2: The answer is 9.", "Step 3: The answer is 9."])
    tr = solve(weak)
    assert tr["stop"] == "repetition" and tr["n_steps"] == 2
    assert tr["steps"][-1]["rejected"] == "repeat" and tr["answer"] == "9" and tr["correct"]
    assert tr["weak_tokens"] == sum(
        len(t.split()) for t in weak.texts
    )  # the rejected step's tokens were spent
    off = solve(Script(weak.texts), max_steps=5, repetition="off")
    assert off["stop"] == "step_cap" and off["n_steps"] == 5


def test_a_step_that_ends_in_a_loop_is_not_accepted():
    looped = "Step 2: so we get " + "3. " * 40
    tr = solve(Script(["Step 1: 4 + 5 = 9.", looped], finish="length"))
    assert tr["stop"] == "repetition" and tr["steps"][-1]["rejected"] == "loop" and tr["n_steps"] == 1
    assert degenerate("x = 1, y = 2, z = 3, so the answer is 9", "x = 1") is None
    assert step_key("Step 12: The Answer is 9!") == step_key("the answer is 9")


def test_a_step_that_is_only_a_number_label_is_compared_as_written():
    # SmolLM2-135M on GSM8K problem 0 under transformers serve: "1." as every step after "... = 1."
    assert step_key("1.") == "1" and step_key("Step 3:") == "step 3"
    assert degenerate("1.", "1.") == "repeat" and degenerate("2.", "1.") is None
    tr = solve(Script(["Step 1: 16 / 16 = 1.", "1.", "1."]), max_steps=6)
    assert tr["stop"] == "repetition" and tr["n_steps"] == 2 and tr["steps"][-1]["rejected"] == "repeat"


def test_truncated_steps_are_counted():
    tr = solve(Script(["Step 1: we add 4 and", r"so \boxed{9}"], finish="length"))
    assert tr["n_truncated"] == 2 and all(s["weak"]["finish"] == "length" for s in tr["steps"])


def test_no_call_with_a_budget_too_small_for_a_step():
    weak = Script([f"Step {k}: " + " ".join(["w"] * 7) + f" {k}." for k in range(1, 9)])  # 10 words each
    tr = solve(weak, max_solution_tokens=40, min_step_tokens=16)
    assert tr["stop"] == "token_cap" and tr["weak_tokens"] == 30  # 3 calls of 10: 10 tokens left < 16
    assert weak.budgets == [40, 30, 20]
    # the router asks for a regeneration when the weak step left too little: M_w's proposal is kept
    strong = Script([r"Therefore \boxed{9}."], name="strong")
    prm = BatchedPRM(FakePRMBackend(), "prm")
    weak = Script(["Step 1: a wrong carry gives 10 so so so so so so so so so so"])
    tr = solve(
        weak, strong, ThresholdRouter(0.5), prm, max_solution_tokens=24, min_step_tokens=16, max_steps=1
    )
    assert tr["steps"][0]["action"] == "regenerate" and "budget" in tr["steps"][0]["regenerate_skipped"]
    assert strong.budgets == [] and tr["strong_tokens"] == 0


def test_a_full_context_ends_the_problem_with_what_it_has():
    weak = Script(["Step 1: 4 + 5 = 9.", ContextFullError("full")])
    tr = solve(weak)
    assert tr["stop"] == "context_full" and tr["n_steps"] == 1 and tr["steps"][-1]["context_full"] == "full"


@pytest.mark.parametrize(("formats", "answer"), [(("boxed", "hash", "answer-is"), "8"), (("boxed",), None)])
def test_answer_formats(formats, answer):
    weak = Script(["Janet has 3 + 5 = 8 apples.\n#### 8\nThe answer is: 8"], finish="eos")
    tr = solve(weak, answer_formats=formats)
    assert tr["answer"] == answer and tr["answer_format"] == (formats[1] if answer else None)


def test_gsm8k_hash_line_ends_a_solution_and_answer_is_does_not():
    # SmolLM2 ends its GSM8K solutions with "#### 18" then "The answer is: 18" (no \boxed{})
    assert ends_solution("She makes 9 x 2 = 18 dollars.\n#### 18\nThe answer is: 18", "step")
    assert ends_solution(r"so \boxed{18}", "step") and not ends_solution(r"within \boxed{}", "step")
    assert not ends_solution("The answer is 9 eggs left, times 2.", "step")  # said on the way: not the end
    assert not ends_solution("#### ", "step") and ends_solution("", "eos")
