"""The defect classifier: a small CNN on 128x128x1 inputs in [0, 1], softmax inside the model."""
import tensorflow as tf

from data import LABELS


def build_model(size: int = 128) -> tf.keras.Model:
    inputs = tf.keras.Input(shape=(size, size, 1), batch_size=None, name="input")
    x = inputs
    # Thin defects (2-5 px at 640x480 are ~1 px at 128x128): full-resolution first layer and max
    # pooling keep them; global max pooling lets a small defect anywhere decide the frame.
    for filters in (16, 24, 32, 48):
        x = tf.keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = tf.keras.layers.BatchNormalization(momentum=0.9)(x)
        x = tf.keras.layers.ReLU()(x)
        x = tf.keras.layers.MaxPooling2D(2)(x)
    x = tf.keras.layers.Conv2D(64, 3, padding="same", use_bias=False)(x)
    x = tf.keras.layers.BatchNormalization(momentum=0.9)(x)
    x = tf.keras.layers.ReLU()(x)
    x = tf.keras.layers.GlobalMaxPooling2D()(x)
    x = tf.keras.layers.Dense(len(LABELS))(x)
    outputs = tf.keras.layers.Softmax(name="probs")(x)
    return tf.keras.Model(inputs, outputs, name="defect_cnn")


def train(model: tf.keras.Model, train_split, val_split, epochs: int, batch_size: int = 64, seed: int = 1) -> dict:
    tf.keras.utils.set_random_seed(seed)

    def dataset(split, shuffle: bool):
        ds = tf.data.Dataset.from_tensor_slices((split.pixels, split.labels))
        if shuffle:
            ds = ds.shuffle(len(split.labels), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size).map(lambda p, y: (tf.cast(p, tf.float32) / 255.0, y))
        return ds.prefetch(2)

    steps = epochs * ((len(train_split.labels) + batch_size - 1) // batch_size)
    schedule = tf.keras.optimizers.schedules.CosineDecay(3e-3, steps, alpha=0.02)
    model.compile(optimizer=tf.keras.optimizers.Adam(schedule),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    best = KeepBest()
    history = model.fit(dataset(train_split, True), validation_data=dataset(val_split, False),
                        epochs=epochs, callbacks=[best], verbose=2)
    best.restore(model)
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


class KeepBest(tf.keras.callbacks.Callback):
    """Remembers the weights of the epoch with the lowest validation loss."""

    def __init__(self):
        super().__init__()
        self.best_loss = float("inf")
        self.best_weights = None
        self.best_epoch = -1

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("val_loss", float("inf"))
        if loss < self.best_loss:
            self.best_loss, self.best_epoch = loss, epoch
            self.best_weights = self.model.get_weights()

    def restore(self, model):
        if self.best_weights is not None:
            model.set_weights(self.best_weights)
            print(f"restored weights of epoch {self.best_epoch + 1} (val_loss {self.best_loss:.4f})", flush=True)
