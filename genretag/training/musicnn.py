"""musicnn's MSD backbone re-implemented in Keras 3, and the GTZAN network built on it.

The layers follow ``musicnn/models.py`` (0.1.0, ``build_musicnn`` with 64 mid-end filters and 200
back-end units), layer for layer, so the weights that ``scripts/port_musicnn.py`` reads from the
MSD_musicnn checkpoint load one to one:

* front end: input batch norm; two timbral convolutions (7 x 38 and 7 x 67 mel bins, 204 filters,
  time padded by 3) and three temporal ones (128, 64 and 32 frames x 1 bin, 51 filters, 'same'),
  each ReLU, batch norm, then the maximum over frequency: 561 channels per frame. The timbral ones
  are computed as :func:`frequency_unfolded` convolutions (the same weights and sums, another graph);
* mid end: three 7-frame convolutions of 64 filters, the last two with residual connections,
  densely joined to the front end: 753 channels per frame;
* back end: the maximum and the mean over time (the pooled features, 753 each), interleaved as
  musicnn's flatten does, batch norm, Dense 200 (ReLU, batch norm: the ``penultimate`` features),
  Dense 50 to the MSD tags' logits.

The weights are musicnn's (ISC licence, kept in :data:`LICENCE` beside them). The model takes one
log-mel patch (187 frames x 96 bins x 1), the feature kind ``musicnn`` of :mod:`genretag.features`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS = Path(__file__).parent / "data" / "musicnn_msd.weights.h5"
"""The ported MSD_musicnn weights of :func:`build_backbone` (written by ``scripts/port_musicnn.py``)."""
LICENCE = WEIGHTS.with_name("LICENSE.musicnn.txt")

N_FRAMES, N_MELS = 187, 96
POOLED = 2 * 753  # mean_pool then max_pool, per patch
MSD_TAGS = ("rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s", "alternative rock",
            "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul", "indie rock", "Mellow",
            "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies", "blues", "hard rock",
            "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
            "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb",
            "indie pop", "sad", "House", "happy")

FRONT_END = (  # (layer name, filters, kernel, padding), in musicnn's creation order
    ("timbral_74", 204, (7, 38), "valid"),
    ("timbral_77", 204, (7, 67), "valid"),
    ("temporal_128", 51, (128, 1), "same"),
    ("temporal_64", 51, (64, 1), "same"),
    ("temporal_32", 51, (32, 1), "same"),
)
MID_END = ("midend_1", "midend_2", "midend_3")
MID_FILTERS, BACK_UNITS = 64, 200


def frequency_unfolded(conv_class: type) -> type:
    """A Conv2D over (time, mel) patches with one input channel, computed on the input unfolded along mel.

    ``kernel (kt, kf, 1, filters)`` is kept as musicnn's, so the ported weights load as they are; the call
    gathers each of the ``n_mels - kf + 1`` mel positions' ``kf`` bins into channels and convolves
    ``(kt, 1)`` over them. The sums are the same; the LiteRT export then holds an ordinary convolution
    with ``kf`` input channels where it held one with a single channel and a ``kt x kf`` window, for
    which XNNPACK keeps one pointer per output pixel and tap: the musicnn interpreter's memory falls
    by 39 MB (98 to 59) and its time per patch by about 15% (bench/README.md, "musicnn export").
    """
    from tensorflow.keras import ops

    def call(self: Any, inputs: Any) -> Any:
        kt, kf = self.kernel_size
        positions = inputs.shape[2] - kf + 1
        taps = (np.arange(positions)[:, None] + np.arange(kf)[None, :]).astype(np.int32)
        unfolded = ops.take(inputs[..., 0], taps, axis=2)  # (batch, time, positions, kf)
        kernel = ops.reshape(self.kernel, (kt, 1, kf, self.filters))
        return self.activation(ops.conv(unfolded, kernel, padding="valid") + self.bias)

    # The class keeps its base's name: Keras files name a layer's weights after its class
    # (``layers/conv2d_1/vars``), so the ported weights and every saved bundle load unchanged.
    return type(conv_class.__name__, (conv_class,), {"call": call, "__doc__": frequency_unfolded.__doc__})


def build_backbone(name: str = "musicnn_msd") -> Any:
    """The backbone: a patch (187, 96, 1) to ``[pooled (1506: mean_pool, max_pool), penultimate (200), tags (50)]``.

    ``tags`` are the sigmoid probabilities of :data:`MSD_TAGS`, as musicnn's taggram.
    """
    from tensorflow import keras
    from tensorflow.keras import layers, ops

    patch = keras.Input(shape=(N_FRAMES, N_MELS, 1), name="logmel")
    x = layers.BatchNormalization(name="input_bn")(patch)
    padded = layers.ZeroPadding2D(((3, 3), (0, 0)))(x)  # time only: musicnn's 'same' for the timbral kernels
    front = []
    unfolded_conv = frequency_unfolded(layers.Conv2D)
    for layer, filters, kernel, padding in FRONT_END:
        conv_class = unfolded_conv if padding == "valid" else layers.Conv2D
        conv = conv_class(filters, kernel, padding=padding, activation="relu", name=layer)
        y = layers.BatchNormalization(name=f"{layer}_bn")(conv(padded if padding == "valid" else x))
        front.append(ops.max(y, axis=2))  # over frequency: (batch, frames, filters)
    front_end = layers.Concatenate(axis=-1)(front)  # (batch, 187, 561)

    mid = [front_end]
    y = front_end
    for i, layer in enumerate(MID_END):
        conv = layers.Conv1D(MID_FILTERS, 7, padding="valid", activation="relu", name=layer)
        z = layers.BatchNormalization(name=f"{layer}_bn")(conv(layers.ZeroPadding1D(3)(y)))
        y = z if i == 0 else layers.Add()([z, y])
        mid.append(y)
    features = layers.Concatenate(axis=-1)(mid)  # (batch, 187, 753)

    max_pool = ops.max(features, axis=1)
    mean_pool = ops.mean(features, axis=1)
    interleaved = layers.Reshape((POOLED,))(ops.stack([max_pool, mean_pool], axis=-1))  # musicnn's flatten order
    h = layers.BatchNormalization(name="pool_bn")(interleaved)
    h = layers.Dense(BACK_UNITS, activation="relu", name="penultimate")(h)
    penultimate = layers.BatchNormalization(name="penultimate_bn")(h)
    tags = layers.Dense(len(MSD_TAGS), activation="sigmoid", name="tags")(penultimate)
    pooled = layers.Concatenate(axis=-1, name="pooled")([mean_pool, max_pool])
    return keras.Model(patch, [pooled, penultimate, tags], name=name)


def load_backbone(weights: Path = WEIGHTS) -> Any:
    """The backbone with the ported MSD weights."""
    model = build_backbone()
    model.load_weights(weights)
    return model


def pooled_features(backbone: Any, patches: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The pooled features (n, 1506) of log-mel patches (n, 187, 96), one compiled forward pass per batch."""
    import tensorflow as tf

    if len(patches) == 0:
        return np.zeros((0, POOLED), np.float32)
    forward = getattr(backbone, "_pooled_forward", None)
    if forward is None:  # traced once per model, whatever the batch size
        spec = tf.TensorSpec((None, N_FRAMES, N_MELS, 1), tf.float32)
        forward = tf.function(lambda x: backbone(x, training=False)[0], input_signature=[spec])
        backbone._pooled_forward = forward
    x = np.asarray(patches, np.float32)[..., None]
    return np.concatenate([forward(x[i: i + batch_size]).numpy() for i in range(0, len(x), batch_size)])


def build_classifier(input_shape: tuple[int, int] = (N_FRAMES, N_MELS), n_classes: int = 10,
                     name: str = "musicnn") -> Any:
    """The backbone's pooled features, standardised, through one Dense softmax layer: a patch to genre probabilities.

    The GTZAN head (genretag.training.pretrained) is a logistic regression: its standardisation is the
    ``standardise`` layer's weights and its temperature is folded into the Dense layer's, so the whole
    network rebuilds from its name.
    """
    from tensorflow import keras
    from tensorflow.keras import layers

    if tuple(input_shape) != (N_FRAMES, N_MELS):
        raise ValueError(f"musicnn takes ({N_FRAMES}, {N_MELS}) log-mel patches, not {tuple(input_shape)}")
    backbone = build_backbone()
    patch = keras.Input(shape=(N_FRAMES, N_MELS, 1), name="logmel")
    standardised = layers.Normalization(name="standardise")(backbone(patch)[0])
    probs = layers.Dense(n_classes, activation="softmax", name="genre")(standardised)
    return keras.Model(patch, probs, name=name)
