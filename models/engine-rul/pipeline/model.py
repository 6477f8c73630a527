"""The two models: a random forest on 'summary' features (the baseline of our users' guide) and a
small 1D-CNN on the normalised 'window'."""
import numpy as np
import tensorflow as tf
from sklearn.ensemble import RandomForestRegressor

from data import TAGS, WINDOW

# The sensors that carry the degradation in FD001/FD003 (the 14 of Li et al. 2018 and most
# published C-MAPSS work). The CNN reads all 24 tags, but its first-layer weights on the others
# (the three settings, which only carry noise in a single-condition fleet, the constant s1, s5,
# s16, s18, s19, and s6 and s10, nearly constant) are held at zero: it overfits them otherwise.
CNN_SENSORS = ["s2", "s3", "s4", "s7", "s8", "s9", "s11", "s12", "s13", "s14", "s15", "s17", "s20", "s21"]
# Three towers of the same CNN trained with different seeds, averaged inside the model: one tower
# varies by about +-0.5 cycles of validation RMSE from seed to seed; the average is steadier.
CNN = {"filters": 32, "kernel": 5, "convs": 3, "bottleneck": 8, "dense": 64,
       "epochs": 20, "batch": 256, "learningRate": 1e-3, "seeds": [1, 2, 3]}
RF = {"n_estimators": 100, "max_depth": 12, "min_samples_leaf": 10, "max_features": 0.33, "random_state": 0}


def channel_mask() -> np.ndarray:
    return np.array([1.0 if t in CNN_SENSORS else 0.0 for t in TAGS], dtype=np.float32)


class ChannelMask(tf.keras.constraints.Constraint):
    """Keeps a Conv1D kernel [k, in, out] at zero on the masked input channels."""

    def __init__(self, mask):
        self.mask = np.asarray(mask, dtype=np.float32)

    def __call__(self, w):
        return w * self.mask[None, :, None]

    def get_config(self):
        return {"mask": self.mask.tolist()}


def build_tower(name: str = "tower") -> tf.keras.Model:
    inputs = tf.keras.Input(shape=(WINDOW, len(TAGS)), name="window")
    x = inputs
    for i in range(CNN["convs"]):
        x = tf.keras.layers.Conv1D(CNN["filters"], CNN["kernel"], padding="same", activation="relu",
                                   kernel_constraint=ChannelMask(channel_mask()) if i == 0 else None)(x)
    # A narrow last convolution, then flatten: the position in the window (how recent) matters.
    x = tf.keras.layers.Conv1D(CNN["bottleneck"], 3, padding="same", activation="relu")(x)
    x = tf.keras.layers.Flatten()(x)
    x = tf.keras.layers.Dense(CNN["dense"], activation="relu")(x)
    outputs = tf.keras.layers.Dense(1, name="rul")(x)
    return tf.keras.Model(inputs, outputs, name=name)


def build_cnn() -> tf.keras.Model:
    """The shipped model: the towers' mean RUL, output 'rul' [1, 1]."""
    inputs = tf.keras.Input(shape=(WINDOW, len(TAGS)), name="window")
    parts = []
    for i, seed in enumerate(CNN["seeds"]):
        tf.keras.utils.set_random_seed(seed)  # each tower's initial weights come from its seed
        parts.append(build_tower(f"tower{i}"))
    outputs = tf.keras.layers.Average(name="rul")([t(inputs) for t in parts])
    return tf.keras.Model(inputs, outputs, name="engine_rul_cnn")


def towers(model: tf.keras.Model) -> list[tf.keras.Model]:
    return [layer for layer in model.layers if isinstance(layer, tf.keras.Model)]


def train_cnn(model: tf.keras.Model, x: np.ndarray, y: np.ndarray, val=None) -> dict:
    """Trains each tower on its own with its seed; returns the towers' histories."""
    return {f"tower{i}": train_tower(t, x, y, seed, val) for i, (t, seed) in enumerate(zip(towers(model), CNN["seeds"]))}


def train_tower(model: tf.keras.Model, x: np.ndarray, y: np.ndarray, seed: int, val=None) -> dict:
    """A fixed number of epochs with a cosine-decayed learning rate; the last epoch's weights are
    kept (the validation engines are only watched, never used to pick an epoch)."""
    tf.keras.utils.set_random_seed(seed)
    steps = CNN["epochs"] * ((len(y) + CNN["batch"] - 1) // CNN["batch"])
    schedule = tf.keras.optimizers.schedules.CosineDecay(CNN["learningRate"], steps, alpha=0.05)
    model.compile(optimizer=tf.keras.optimizers.Adam(schedule), loss="mse")
    history = model.fit(x, y, batch_size=CNN["batch"], epochs=CNN["epochs"], validation_data=val, verbose=2)
    mask = channel_mask()
    kernel = model.layers[1].get_weights()[0]
    if np.any(kernel[:, mask == 0, :]):
        raise RuntimeError("the channel mask did not hold: masked first-layer weights are not zero")
    return {k: [round(float(v), 4) for v in vals] for k, vals in history.history.items()}


def train_rf(x: np.ndarray, y: np.ndarray) -> RandomForestRegressor:
    return RandomForestRegressor(n_jobs=2, **RF).fit(x, y)
