"""Metrics of a classifier on a split, and the choice of the alert threshold."""
import numpy as np

from data import LABELS, OK_INDEX

# The targets the threshold is chosen for, with a margin for the validation-to-test gap.
TARGET_RECALL = 0.99
RECALL_MARGIN = 0.004


def defect_scores(probs: np.ndarray) -> np.ndarray:
    """Defect score = 1 - p(ok): what the runtime compares with the threshold."""
    return 1.0 - probs[:, OK_INDEX]


def defect_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    actual = labels != OK_INDEX
    flagged = scores >= threshold
    tp = int(np.sum(actual & flagged))
    fp = int(np.sum(~actual & flagged))
    fn = int(np.sum(actual & ~flagged))
    tn = int(np.sum(~actual & ~flagged))
    return {"threshold": float(threshold), "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": tp / (tp + fp) if tp + fp else 1.0,
            "recall": tp / (tp + fn) if tp + fn else 1.0}


def choose_threshold(labels: np.ndarray, scores: np.ndarray) -> dict:
    """On the validation set: among thresholds that keep recall >= 99.4%, those with the best
    precision; of these the median (a threshold in the middle of the good range is less tuned to
    this particular set than one at its edge). Falls back to the best recall if none reaches it."""
    grid = np.round(np.arange(0.02, 0.981, 0.005), 4)
    rows = [defect_metrics(labels, scores, t) for t in grid]
    needed = TARGET_RECALL + RECALL_MARGIN
    feasible = [r for r in rows if r["recall"] >= needed]
    if not feasible:
        best_recall = max(r["recall"] for r in rows)
        feasible = [r for r in rows if r["recall"] >= best_recall]
    best_precision = max(r["precision"] for r in feasible)
    ties = [r for r in feasible if r["precision"] >= best_precision - 1e-12]
    chosen = ties[len(ties) // 2]
    return {**chosen, "rule": f"median of thresholds with best validation precision among those with validation recall >= {needed:.3f}",
            "goodRange": [ties[0]["threshold"], ties[-1]["threshold"]]}


def evaluate(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict:
    predicted = probs.argmax(axis=1)
    confusion = np.zeros((len(LABELS), len(LABELS)), dtype=np.int64)
    for a, p in zip(labels, predicted):
        confusion[a, p] += 1
    return {"count": int(len(labels)),
            "accuracy": float(np.mean(predicted == labels)),
            "defect": defect_metrics(labels, defect_scores(probs), threshold),
            "confusion": {"rows": "actual", "columns": "predicted (argmax)", "labels": LABELS,
                          "matrix": confusion.tolist()}}


def agreement(reference: np.ndarray, other: np.ndarray) -> dict:
    return {"argmaxAgreement": float(np.mean(reference.argmax(1) == other.argmax(1))),
            "maxAbsProbDiff": float(np.max(np.abs(reference - other))),
            "meanAbsProbDiff": float(np.mean(np.abs(reference - other)))}
