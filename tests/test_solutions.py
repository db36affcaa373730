"""Exercise stubs and their reference solutions: every solution passes its check, an unfinished stub
tells the learner so (in a notebook, without a traceback), and COURSE_SOLUTIONS=1 fills it in."""
import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_notebook

from course_lib.course import checks, solutions
from course_lib.course.checks import ExerciseError, ExerciseNotDone
from course_lib.course.exercises import SOLUTIONS_ENV, exercise, solutions_enabled

# every exercise of the notebooks: its solution's name -> the check that grades it
CHECK_OF = {
    "my_auroc": checks.check_auroc, "to_unit_range": checks.check_to_unit_range,
    "protocol_labels": checks.check_one_class_labels, "standardize": checks.check_standardize,
    "confusion_at_threshold": checks.check_confusion_at_threshold, "alphas_cumprod": checks.check_alphas_cumprod,
    "q_sample_closed_form": checks.check_q_sample, "posterior_mean_variance": checks.check_posterior,
    "gaussian_kl": checks.check_normal_kl, "elbo_term": checks.check_elbo_term,
    "ddim_update": checks.check_ddim_update, "x0_and_v_from_eps": checks.check_parameterizations,
    "ddim_reconstruct": checks.check_ddim_reconstruction, "sinusoidal_embedding": checks.check_timestep_embedding,
    "attention": checks.check_attention, "ema_update": checks.check_ema_update, "warmup_lr": checks.check_warmup_lr,
    "noise_error_map": checks.check_noise_prediction_map, "blur": checks.check_smooth_maps,
    "z_map": checks.check_z_map, "even_residual_map": checks.check_even_residual_map,
    "patchify": checks.check_patchify, "modulate": checks.check_modulate,
    "paired_bootstrap": checks.check_paired_bootstrap, "pareto_front": checks.check_pareto_front,
    "pgd_step": checks.check_pgd_step, "false_alarms": checks.check_false_alarms,
}


def test_every_solution_has_a_check_and_passes_it():
    assert set(CHECK_OF) == set(solutions.NAMES)
    for name, check in CHECK_OF.items():
        assert check(getattr(solutions, name)), name


def stub_of(name):
    def stub(*args):
        raise NotImplementedError("your code here")
    stub.__name__ = name
    return exercise(stub)


@pytest.mark.parametrize("name", ["q_sample_closed_form", "gaussian_kl", "patchify", "modulate", "my_auroc"])
def test_an_unfinished_stub_says_so_and_where_the_solution_is(name, monkeypatch):
    monkeypatch.delenv(SOLUTIONS_ENV, raising=False)
    with pytest.raises(ExerciseNotDone, match="not done yet") as err:
        CHECK_OF[name](stub_of(name))
    assert f"solutions.show({name!r})" in str(err.value) and "COURSE_SOLUTIONS=1" in str(err.value)


@pytest.mark.parametrize("name", sorted(CHECK_OF))
def test_with_the_switch_an_unfinished_stub_runs_the_reference(name, monkeypatch, capsys):
    monkeypatch.setenv(SOLUTIONS_ENV, "1")
    stub = stub_of(name)
    assert CHECK_OF[name](stub)
    assert capsys.readouterr().out.count("running the reference solution") == 1      # said once, not per call


def test_the_switch_never_replaces_the_learners_own_code(monkeypatch):
    monkeypatch.setenv(SOLUTIONS_ENV, "1")

    @exercise
    def q_sample_closed_form(x0, abar_t, eps):
        return abar_t * x0 + (1 - abar_t) * eps                  # wrong: no square roots
    with pytest.raises(ExerciseError, match="square roots") as err:
        checks.check_q_sample(q_sample_closed_form)
    assert not isinstance(err.value, ExerciseNotDone)


def test_bad_names_and_switch_values_get_clear_errors(monkeypatch):
    with pytest.raises(NameError, match="no reference solution named 'q_sampel'"):
        stub_of("q_sampel")
    with pytest.raises(KeyError, match="the exercises are: my_auroc"):
        solutions.show("nope")
    monkeypatch.setenv(SOLUTIONS_ENV, "maybe")
    with pytest.raises(ValueError, match="set it to 1"):
        solutions_enabled()
    monkeypatch.setenv(SOLUTIONS_ENV, "0")
    assert not solutions_enabled()


def test_show_prints_the_solution(capsys):
    solutions.show("gaussian_kl")
    assert "def gaussian_kl(mu1, var1, mu2, var2)" in capsys.readouterr().out


def run_notebook(tmp_path, env_value):
    nb = new_notebook(cells=[
        new_code_cell("import course_lib\nP = course_lib.setup(seed=0, quiet=True)\nfrom course_lib.course import checks\n"
                      "from course_lib.course.exercises import exercise"),
        new_code_cell(f"%env {SOLUTIONS_ENV}={env_value}"),
        new_code_cell("@exercise\ndef gaussian_kl(mu1, var1, mu2, var2):\n    raise NotImplementedError('the KL')\n\n\n"
                      "checks.check_normal_kl(gaussian_kl)"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except CellExecutionError:
        pass
    return nb.cells[2].outputs


def test_in_a_notebook_an_unfinished_stub_shows_a_message_not_a_traceback(tmp_path):
    outputs = run_notebook(tmp_path, 0)
    errors = [o for o in outputs if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].ename == "ExerciseNotDone"
    shown = "\n".join(errors[0].traceback)
    assert "not done yet" in shown and "solutions.show('gaussian_kl')" in shown
    assert "Traceback" not in shown and "File " not in shown and len(errors[0].traceback) == 1


def test_in_a_notebook_the_switch_fills_the_stub(tmp_path):
    outputs = run_notebook(tmp_path, 1)
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert not [o for o in outputs if o.output_type == "error"]
    assert "running the reference solution" in text and "✓" in text
