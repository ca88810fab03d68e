"""A study drawn with matplotlib (optional): the optimisation history and which keys matter."""

from __future__ import annotations

from pathlib import Path

from nnctl.errors import UsageError
from nnctl.plot import check_format, pyplot, save_figure
from nnctl.search import study as search


def plot_study(storage: str, name: str, out: Path) -> Path:
    """Validation accuracy per trial with the best so far, and the parameter importances
    (Optuna's PED-ANOVA) once two trials have completed, as one PNG."""
    plt = pyplot()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    check_format(Path(out), FigureCanvasAgg.get_supported_filetypes())
    optuna = search.require_optuna()
    try:
        study = optuna.load_study(study_name=name, storage=search.open_storage(storage, existing=True))
    except KeyError:
        raise UsageError(f"study {name!r} in {search.redact(storage)}: no such study") from None
    rows = search.rows(study)
    done = [r for r in rows if r.state == "complete"]
    if not done:
        raise UsageError(f"study {name!r} has no completed trial to draw")
    figure, (history, importance) = plt.subplots(1, 2, figsize=(11, 4.2))
    history.plot([r.number for r in done], [100 * r.value for r in done], "o", label="complete")
    pruned = [r for r in rows if r.state == "pruned" and r.latest is not None]
    if pruned:
        history.plot([r.number for r in pruned], [100 * r.latest for r in pruned], "x",
                     color="gray", label="pruned (last report)")
    best, steps = [], []
    for r in done:
        best.append(max(best[-1] if best else 0.0, 100 * r.value))
        steps.append(r.number)
    history.step(steps, best, where="post", label="best so far")
    history.set(xlabel="trial", ylabel="validation accuracy (%)", title="optimisation history")
    history.grid(alpha=0.3)
    history.legend()
    if len(done) >= 2:
        weights = optuna.importance.get_param_importances(study)
        keys = list(weights)[::-1]
        importance.barh(keys, [weights[k] for k in keys])
        importance.set(xlabel="importance (PED-ANOVA, normalised)", title="parameter importance")
    else:
        importance.set_axis_off()
        importance.text(0.5, 0.5, "importance needs 2 completed trials", ha="center")
    return save_figure(figure, out, f"study {name}")
