"""A model of your own, tuned by `tuning`: a small 1-D convolution over the 8x8 digits.

Run it from the repository root:

    tuning sweep +experiment=digits_cnn                 # conf/experiment/digits_cnn.yaml
    tuning train study=digits_cnn                       # the final model, built by this function

or copy this file next to your data and point at it: `tuning sweep model=custom
model.build=digits_cnn.build data=digits`. `hp` is KerasTuner's HyperParameters API (Int, Float,
Choice, Boolean, Fixed, conditional_scope); `dataset` tells the input shape, task and classes.
The same function runs unchanged under KerasTuner (`def build(hp)` works too).
"""

import keras


def build(hp, dataset):
    # The features arrive as one vector per row (64 pixels); seen as a sequence of 64 steps.
    model = keras.Sequential([keras.Input(shape=dataset.input_shape)])
    model.add(keras.layers.Reshape((dataset.n_features, 1)))
    for i in range(hp.Int("conv_layers", 1, 2)):
        model.add(
            keras.layers.Conv1D(
                hp.Choice(f"filters_{i}", [8, 16, 32]),
                kernel_size=hp.Choice(f"kernel_{i}", [3, 5]),
                padding="same",
                activation="relu",
            )
        )
        model.add(keras.layers.MaxPooling1D(2))
    pooling = hp.Choice("pooling", ["flatten", "average"])
    model.add(keras.layers.Flatten() if pooling == "flatten" else keras.layers.GlobalAveragePooling1D())
    if hp.Boolean("dense"):
        # Asked only when the branch is on: a trial without it has no dense_units parameter.
        with hp.conditional_scope("dense", [True]):
            model.add(keras.layers.Dense(hp.Int("dense_units", 16, 64, step=16), activation="relu"))
    model.add(keras.layers.Dropout(hp.Float("dropout", 0.0, 0.4, step=0.1)))
    # The output the task needs: n_classes softmax units for the 10 digits.
    model.add(keras.layers.Dense(dataset.n_classes, activation="softmax"))
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Float("learning_rate", 1e-4, 1e-2, sampling="log")),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],  # replaced by the task's metrics (val_log_loss ranks the trials)
    )
    return model
