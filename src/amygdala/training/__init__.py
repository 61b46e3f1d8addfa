"""The train stage: labelled pooled activations -> one readout direction per concept and layer.

``splits`` labels texts, ``directions`` fits (with ``shrinkage`` and ``neutral`` removal), ``layers`` chooses
layers, ``stage`` runs ``amygdala train``.
"""
