"""Layers dlcli adds where Keras has none.

`PositionEmbedding` is the learned position embedding of a transformer
(`keras_hub.layers.PositionEmbedding`'s arguments), so that a token and
position embedding is two entries and an `Add`, not a custom class:

    - Embedding: {input_dim: 20000, output_dim: 32}
      name: tokens
    - PositionEmbedding: {sequence_length: 200}
      name: positions
    - Add:
      inputs: [tokens, positions]

It is registered with Keras under `dlcli>PositionEmbedding`, so models
holding it reload with `safe_mode=True`.
"""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="dlcli")
class PositionEmbedding(keras.layers.Layer):
    """A trainable embedding per position, broadcast over the batch.

    Args:
        sequence_length: the longest sequence; the weight is
            (sequence_length, features), shorter inputs use its first rows.
        initializer: the weight's initializer (Keras name or object).

    Call: takes (batch, steps, features) and returns the embeddings of
    positions 0..steps-1 in the same shape, to add to the input.
    """

    def __init__(self, sequence_length: int, initializer: Any = "glorot_uniform", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sequence_length = int(sequence_length)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape: Any) -> None:
        self.position_embeddings = self.add_weight(
            name="embeddings", shape=(self.sequence_length, int(input_shape[-1])), initializer=self.initializer
        )

    def call(self, inputs: Any) -> Any:
        steps = keras.ops.shape(inputs)[-2]
        positions = keras.ops.slice(self.position_embeddings, (0, 0), (steps, keras.ops.shape(inputs)[-1]))
        return keras.ops.broadcast_to(positions, keras.ops.shape(inputs))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "sequence_length": self.sequence_length,
            "initializer": keras.initializers.serialize(self.initializer),
        }
