"""Classification figures from labels and predictions: confusion matrix, precision, recall, F1."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """counts[true, predicted], from one bincount over true * classes + predicted."""
    flat = labels.astype(np.int64) * classes + predicted.astype(np.int64)
    return np.bincount(flat, minlength=classes * classes).reshape(classes, classes)


@dataclass(frozen=True)
class ClassFigures:
    label: int
    precision: float
    recall: float
    f1: float
    support: int


def per_class(confusion: np.ndarray) -> list[ClassFigures]:
    """Precision = TP / predicted as the class, recall = TP / truly the class; 0 when undefined."""
    true_positive = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    figures = []
    for label in range(len(confusion)):
        tp = true_positive[label]
        precision = tp / predicted[label] if predicted[label] else 0.0
        recall = tp / actual[label] if actual[label] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        figures.append(ClassFigures(label, float(precision), float(recall), float(f1),
                                    int(actual[label])))
    return figures


def averages(figures: list[ClassFigures]) -> dict[str, dict[str, float]]:
    """Macro (every class counts the same) and weighted (by support) means of precision,
    recall and F1, as scikit-learn's classification_report gives them."""
    support = np.array([f.support for f in figures], dtype=np.float64)
    weights = support / support.sum() if support.sum() else np.full(len(figures), 1 / len(figures))
    result = {}
    for name, w in (("macro", np.full(len(figures), 1 / len(figures))), ("weighted", weights)):
        result[name] = {key: float(sum(wi * getattr(f, key) for wi, f in zip(w, figures)))
                        for key in ("precision", "recall", "f1")}
        result[name]["support"] = int(support.sum())
    return result
