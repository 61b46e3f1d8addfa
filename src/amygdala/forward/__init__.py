"""The forward stage: a model, its decoder-layer hooks and one pooled vector per text and layer.

``models`` loads, ``devices`` picks device and dtype, ``capture`` hooks and encodes, ``batching`` plans batches,
``pooling`` pools, ``activation_cache`` keeps pooled activations on disk, ``distributed`` shards over ranks.
"""
