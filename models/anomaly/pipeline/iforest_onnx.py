"""The anomaly pipeline (log of the std features -> StandardScaler -> PCA(whiten) -> IsolationForest)
as one compact ONNX graph computing IsolationForest.decision_function.

Why not skl2onnx's IsolationForest converter alone: it emits a sub-graph per tree (5,421 nodes
for 200 trees, 2.1 MB) that takes 8-16 s to load in onnxruntime and onnxruntime-node, every time
the runtime loads the package. The function itself is small: every leaf of every tree adds a
constant (its depth plus the expected depth of the samples left in it), so the forest is one
TreeEnsembleRegressor summing leaf constants, followed by decision = 0.5 - 2^(-sum). build()
checks this graph against scikit-learn's decision_function and skl2onnx's conversion."""
import numpy as np
import onnx
from onnx import TensorProto, helper
from sklearn.ensemble._iforest import _average_path_length
from sklearn.pipeline import Pipeline

OPSETS = [helper.make_opsetid("", 15), helper.make_opsetid("ai.onnx.ml", 1)]


def _floor_f32(values: np.ndarray) -> np.ndarray:
    """The largest float32 at or below each float64 threshold: for a float32 input x,
    x <= floor32(t) exactly when x <= t, as scikit-learn's trees compare (float32 X, float64 t)."""
    t32 = values.astype(np.float32)
    above = t32.astype(np.float64) > values
    t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
    return t32


def log_std_nodes(mask: np.ndarray, eps: float, out: str) -> tuple[list, list]:
    """input -> std columns log(x + eps), other columns x -> `out`."""
    n = len(mask)
    inits = [
        helper.make_tensor("logstd_mask", TensorProto.FLOAT, [n], mask.tolist()),
        helper.make_tensor("logstd_keep", TensorProto.FLOAT, [n], (1 - mask).tolist()),
        helper.make_tensor("logstd_eps", TensorProto.FLOAT, [], [eps]),
    ]
    nodes = [
        helper.make_node("Mul", ["input", "logstd_mask"], ["logstd_a"], name="logstd_select"),
        helper.make_node("Add", ["logstd_a", "logstd_eps"], ["logstd_b"], name="logstd_eps_add"),
        helper.make_node("Log", ["logstd_b"], ["logstd_c"], name="logstd_log"),
        helper.make_node("Mul", ["logstd_c", "logstd_mask"], ["logstd_d"], name="logstd_only"),
        helper.make_node("Mul", ["input", "logstd_keep"], ["logstd_e"], name="logstd_rest"),
        helper.make_node("Add", ["logstd_d", "logstd_e"], [out], name="logstd_join"),
    ]
    return inits, nodes


def build(pipe: Pipeline, mask: np.ndarray, eps: float) -> onnx.ModelProto:
    scaler, pca, forest = pipe.named_steps["scale"], pipe.named_steps["pca"], pipe.named_steps["iforest"]
    if forest._max_features != forest.n_features_in_:
        raise ValueError("only an IsolationForest that sees every feature (max_features=1.0) is supported")
    n = len(mask)
    # Scaler and whitening PCA folded into one affine map: y = x @ A + b.
    comps = pca.components_ / np.sqrt(pca.explained_variance_)[:, None] if pca.whiten else pca.components_
    a = (comps / scaler.scale_[None, :]).T
    b = -(scaler.mean_ / scaler.scale_ + pca.mean_) @ comps.T
    k = a.shape[1]

    # Leaf constant / (trees * c(max_samples)): the ensemble's sum is the normalised mean path length.
    denominator = len(forest.estimators_) * _average_path_length([forest._max_samples])[0]
    attrs: dict[str, list] = {key: [] for key in (
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_values",
        "nodes_truenodeids", "nodes_falsenodeids", "target_treeids", "target_nodeids", "target_ids",
        "target_weights")}
    for t, est in enumerate(forest.estimators_):
        tree = est.tree_
        leaf_value = (forest._decision_path_lengths[t] + forest._average_path_length_per_tree[t] - 1.0) / denominator
        thresholds = _floor_f32(tree.threshold)
        for node in range(tree.node_count):
            leaf = tree.children_left[node] == -1
            attrs["nodes_treeids"].append(t)
            attrs["nodes_nodeids"].append(node)
            attrs["nodes_featureids"].append(0 if leaf else int(tree.feature[node]))
            attrs["nodes_modes"].append("LEAF" if leaf else "BRANCH_LEQ")
            attrs["nodes_values"].append(0.0 if leaf else float(thresholds[node]))
            attrs["nodes_truenodeids"].append(0 if leaf else int(tree.children_left[node]))
            attrs["nodes_falsenodeids"].append(0 if leaf else int(tree.children_right[node]))
            if leaf:
                attrs["target_treeids"].append(t)
                attrs["target_nodeids"].append(node)
                attrs["target_ids"].append(0)
                attrs["target_weights"].append(float(leaf_value[node]))

    inits, nodes = log_std_nodes(mask, eps, "logstd")
    inits += [
        helper.make_tensor("pca_a", TensorProto.FLOAT, [n, k], a.astype(np.float32).ravel().tolist()),
        helper.make_tensor("pca_b", TensorProto.FLOAT, [k], b.astype(np.float32).tolist()),
        helper.make_tensor("minus_ln2", TensorProto.FLOAT, [], [-np.log(2.0)]),
        helper.make_tensor("offset", TensorProto.FLOAT, [], [-float(forest.offset_)]),
    ]
    nodes += [
        helper.make_node("MatMul", ["logstd", "pca_a"], ["pca_xa"], name="pca_matmul"),
        helper.make_node("Add", ["pca_xa", "pca_b"], ["pca"], name="pca_add"),
        helper.make_node("TreeEnsembleRegressor", ["pca"], ["path"], name="iforest_paths", domain="ai.onnx.ml",
                         n_targets=1, aggregate_function="SUM", post_transform="NONE", **attrs),
        # score_samples = -2^(-path); decision_function = score_samples - offset_
        helper.make_node("Mul", ["path", "minus_ln2"], ["iforest_e"], name="iforest_scale"),
        helper.make_node("Exp", ["iforest_e"], ["iforest_p"], name="iforest_exp"),
        helper.make_node("Sub", ["offset", "iforest_p"], ["scores"], name="iforest_decision"),
    ]
    graph = helper.make_graph(
        nodes, "pump_anomaly_iforest",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 1])],
        inits)
    model = helper.make_model(graph, opset_imports=OPSETS, producer_name="vigil models/anomaly",
                              ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model
