"""runner.measure's benchmark: the work each PAG implementation does (FLOPs: deterministic, so testable)."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import priors
from runner.measure.bench_costs import FlopCount, interval_costs, step_costs
from runner.measure.bench_problem import Case, Problem, cases_for, model_solver
from runner.measure.benchmark import interval_table


@pytest.fixture(scope="module")
def case_costs():
    """Each case's one-step costs of a model (``step_costs``: a fresh problem per case), computed once per model."""
    cache = {}

    def costs(model: str) -> dict[str, dict[str, float]]:
        if model not in cache:
            cache[model] = {c.label: step_costs(model, c, "cpu") for c in cases_for(model)}
        return cache[model]

    return costs


def mid_chain_problem(model: str, solver: str | None = None):
    """The benchmark's problem after one PAG-off step (as ``step_costs`` warms up: first calls build and cache the
    null embedding), and the timestep the benchmark times."""
    problem = Problem(model, "cpu", solver)
    schedule = problem.solver(Case("none"))[0].schedule
    problem.step(Case("none"))
    return problem, int(schedule.timesteps[len(schedule) // 2])


@pytest.mark.parametrize("model", ["test_adm", "test_sd"])
def test_flops_of_each_case_are_the_passes_it_runs(case_costs, model):
    """PAG off = the bare equations; PAG without graph adds exactly one perturbed forward pass (counted on its own);
    keeping the graph (naive) adds no backward work, since the data term differentiates the unguided eps; the
    shared prefix and the shared skips each remove work."""
    costs = case_costs(model)
    gflop = {label: c["gflop"] for label, c in costs.items()}
    problem, t = mid_chain_problem(model)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), priors.perturbed_self_attention(problem.prior, problem.layers), counter:
        problem.prior(problem.x_t, t)
    perturbed_pass = counter.get_total_flops() / 1e9

    assert gflop["bare"] == pytest.approx(gflop["none"], rel=1e-12)
    assert gflop["no_grad"] - gflop["none"] == pytest.approx(perturbed_pass, rel=1e-9)
    assert gflop["naive"] == pytest.approx(gflop["no_grad"], rel=1e-12)
    assert gflop["shared"] < gflop["prefix"] < gflop["no_grad"]
    # PAG off runs the bare equations' operators, up to a handful of bookkeeping ones (no hidden per-step work)
    assert costs["bare"]["ops"] <= costs["none"]["ops"] <= costs["bare"]["ops"] * 1.01


def test_latent_levers_and_cfg_do_the_work_they_are_named_for(case_costs):
    """PSLD: CFG + PAG adds one conditional UNet pass with its backward (counted on its own); bf16 autocast changes
    no work, checkpointing adds the recomputed forwards."""
    gflop = {label: c["gflop"] for label, c in case_costs("test_sd").items()}
    problem, t = mid_chain_problem("test_sd")
    x_t = problem.x_t.clone().requires_grad_(True)
    with FlopCount() as cond_pass:  # FlopCounterMode's module hooks refuse autograd.grad on a leaf
        eps = problem.prior(x_t, t, torch.randn(problem.prior.null_embedding.shape)).eps
        torch.autograd.grad(eps.sum(), x_t)

    assert gflop["cfg+pag"] - gflop["shared"] == pytest.approx(cond_pass.flops / 1e9, rel=1e-9)
    assert gflop["none+bf16"] == pytest.approx(gflop["none"], rel=1e-12)
    assert gflop["none+checkpointing"] > gflop["none"]


def test_interval_restorations_run_the_perturbed_pass_only_inside():
    """DPS with 5 evenly spaced steps (t = 999, 749, 500, 250, 0): PAG on [0, 500] adds a pass at 3 of them."""
    rows = interval_costs("test_adm", "cpu", (0.0, 500.0), num_steps=5, repeats=1)
    passes = {r["case"]: r["network_passes"] for r in rows}
    assert passes == {"off": 5, "pag": 10, "pag@[0,500]": 8}
    assert all(r["seconds"] > 0 for r in rows) and rows[0]["x_off"] == 1.0
    assert "pag@[0,500]" in interval_table(rows)


@pytest.mark.parametrize("solver", ["ddnm", "pigdm", "reddiff"])
def test_flops_of_the_other_solvers_cases_are_the_passes_they_run(solver):
    """DDNM and RED-diff read the network once per step without a graph, PiGDM once with its vector-Jacobian
    product (one backward): counted here on the bare network. PAG adds one perturbed forward pass (and nothing to
    the backward: the data terms differentiate the unguided prediction, or nothing); the prefix and skip reuse
    remove work."""
    costs = {c.label: step_costs("test_adm", c, "cpu", solver) for c in cases_for("test_adm", solver=solver)}
    gflop = {label: c["gflop"] for label, c in costs.items()}
    problem, t = mid_chain_problem("test_adm", solver)
    x_t = problem.x_t.clone().requires_grad_(solver == "pigdm")
    with FlopCount() as plain:  # FlopCounterMode's module hooks refuse autograd.grad on a leaf
        eps = problem.prior(x_t, t).eps
        if solver == "pigdm":
            torch.autograd.grad(eps.sum(), x_t)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), priors.perturbed_self_attention(problem.prior, problem.layers), counter:
        problem.prior(problem.x_t, t)
    perturbed_pass = counter.get_total_flops() / 1e9

    assert gflop["bare"] == pytest.approx(gflop["none"], rel=1e-12)
    assert gflop["none"] == pytest.approx(plain.flops / 1e9, rel=1e-9)
    assert gflop["no_grad"] - gflop["none"] == pytest.approx(perturbed_pass, rel=1e-9)
    assert gflop["naive"] == pytest.approx(gflop["no_grad"], rel=1e-12)
    assert gflop["shared"] < gflop["prefix"] < gflop["no_grad"]
    # PAG off runs the bare equations' operators up to a handful of bookkeeping ones (RED-diff: Adam's running
    # moments, which the bare step's single first Adam step does not carry)
    assert costs["bare"]["ops"] <= costs["none"]["ops"] <= costs["bare"]["ops"] + 10


@pytest.mark.parametrize("solver", ["dps", "ddnm", "pigdm", "reddiff"])
def test_bare_step_is_the_solvers_step_without_pag(solver):
    """The baseline computes what the solver's step computes with PAG off (else the ratio would compare two
    different algorithms). RED-diff's first step starts from mu_0 = A^+ y with fresh Adam moments, as the bare
    step's single Adam step does."""
    problem = Problem("test_adm", "cpu", solver)
    step_solver = problem.solver(Case("none"))[0]
    i = len(step_solver.schedule) // 2
    ours = problem.step(Case("none"))
    x = problem.op.pinv(problem.y) if solver == "reddiff" else problem.x_t
    bare = problem.spec.bare_step(step_solver, x, problem.y, problem.noise, i)
    torch.testing.assert_close(ours, bare, rtol=1e-4, atol=1e-5)


def test_problem_refuses_a_solver_of_the_other_prior_space():
    assert model_solver("test_adm") == "dps" and model_solver("test_sd") == "psld"
    with pytest.raises(ValueError, match="does not run on test_adm"):
        Problem("test_adm", "cpu", "psld")
