"""What the page and `GET /api/model` show of a trained network: layers, history, classes."""

from __future__ import annotations

from nnctl import weights
from nnctl.weights import Checkpoint


def saved_epoch(checkpoint: Checkpoint) -> dict | None:
    """The history row of the epoch whose weights the file holds.

    That is the last epoch, except for the best epoch by the monitored metric in a file of a
    run that kept its best weights: `save_best` with a later last epoch (its parameters are
    kept aside in the resume slot 'last'), or early stopping that restored them (the file
    then has no resume state)."""
    from nnctl.experiment import LAST_WEIGHTS_SLOT
    from nnctl.monitor import best_of

    history = checkpoint.history
    if not history:
        return None
    stopping = checkpoint.config.training.early_stopping
    kept_best = (LAST_WEIGHTS_SLOT in checkpoint.optimizer_state
                 or (stopping.active and checkpoint.train_state is None))
    if kept_best:
        try:
            epoch, _ = best_of(history, stopping.monitor, stopping.min_delta)
        except KeyError:  # the monitored split is not in the history
            return history[-1]
        return next((row for row in history if row["epoch"] == epoch), history[-1])
    return history[-1]


def summary(checkpoint: Checkpoint, name: str) -> dict:
    """The model as JSON: layers, parameter count, training settings, history, classes."""
    network, config = checkpoint.network, checkpoint.config
    layers = [
        {"name": f"dense {index}", "inputs": int(w.shape[1]), "units": int(w.shape[0]),
         "activation": f.name, "dropout": rate, "parameters": int(w.size + b.size)}
        for index, (w, b, f, rate) in enumerate(zip(network.weights, network.biases,
                                                    network.activations, network.dropout))]
    training = config.training
    row = saved_epoch(checkpoint)
    test = (row or {}).get("evaluations", {}).get("test")
    return {
        "file": name,
        "dataset": checkpoint.dataset.title,
        "classes": weights.class_names(checkpoint),
        "image_shape": list(checkpoint.dataset.image_shape),
        "input": network.sizes[0],
        "layers": layers,
        "parameters": network.parameter_count(),
        "loss": config.loss,
        "optimizer": training.optimizer.name,
        "learning_rate": training.learning_rate,
        "batch_size": training.batch_size,
        "epochs": len(checkpoint.history),
        "saved_epoch": row["epoch"] if row else None,
        "test_accuracy": test["accuracy"] if test else None,
        "test_loss": test["loss"] if test else None,
        "history": checkpoint.history,
    }
