"""Neutral-direction removal: the neutral texts' top principal components leave the vectors, and reading raw
activations with ``Pv`` equals reading projected activations with ``v``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amygdala.training.directions import compute_directions, fit_directions
from amygdala.training.neutral import neutral_components, neutral_stats, project_out, project_stats, project_vectors
from amygdala.training.splits import LabelledTexts
from amygdala.training.statistics import ConceptStats, DirectionError

HIDDEN = 24


def _texts(seed: int = 0) -> tuple[torch.Tensor, LabelledTexts, torch.Tensor]:
    """Two concepts (60 positives each) and 60 neutral texts over noise with one large shared nuisance axis
    ``u`` (std 20); concept c adds ``2·e_c``. Returns pooled ``[180, 1, H]``, the labels and ``u``."""
    generator = torch.Generator().manual_seed(seed)
    u = torch.nn.functional.normalize(torch.randn(HIDDEN, generator=generator), dim=0)
    x = torch.randn(180, HIDDEN, generator=generator) + 20 * torch.randn(180, 1, generator=generator) * u
    positive = torch.zeros((180, 2), dtype=torch.bool)
    positive[:60, 0], positive[60:120, 1] = True, True
    x[:60, 0] += 2.0
    x[60:120, 1] += 2.0
    keys = tuple(map(str, range(180)))
    return x.unsqueeze(1), LabelledTexts(("a", "b"), keys, keys, positive, ~positive), u


def test_neutral_components_are_the_principal_directions_of_the_neutral_texts() -> None:
    pooled, data, u = _texts()
    components = neutral_components(neutral_stats(pooled, data, (3,)), 2)[3]
    neutral = pooled[120:, 0].double().numpy()
    reference = np.linalg.svd(neutral - neutral.mean(0), full_matrices=False)[2][:2]  # independent: SVD of rows
    assert components.shape == (2, HIDDEN)
    assert np.abs(np.abs((components.numpy() * reference).sum(1)) - 1).max() < 1e-8
    assert abs(float(components[0] @ u.double())) > 0.99


def test_removed_components_are_orthogonal_to_the_vectors_and_pv_reads_as_projected_activations() -> None:
    pooled, data, _ = _texts()
    stats = ConceptStats.from_pooled(pooled, data.positive, data.negative, data.concepts, (3,))
    components = neutral_components(neutral_stats(pooled, data, (3,)), 3)
    fitted = compute_directions(project_stats(stats, components), "lda_diagonal")
    vectors = project_vectors(fitted, components)
    assert float((components[3].float() @ vectors[3].T).abs().max()) < 1e-6
    torch.testing.assert_close(vectors[3].norm(dim=1), torch.ones(2))
    projected = project_out(pooled, components, (3,))[:, 0]
    raw_readout, projected_readout = pooled[:, 0] @ vectors[3].T, projected @ fitted[3].T
    scale = fitted[3].double() @ (torch.eye(HIDDEN, dtype=torch.float64) - components[3].T @ components[3])
    torch.testing.assert_close(raw_readout * scale.norm(dim=1).float(), projected_readout, rtol=1e-4, atol=1e-4)
    # the projected statistics are those of the projected activations
    direct = ConceptStats.from_pooled(projected.unsqueeze(1), data.positive, data.negative, data.concepts, (3,))
    torch.testing.assert_close(project_stats(stats, components).covariance(3), direct.covariance(3))


def test_fit_directions_with_neutral_removal_drops_the_nuisance_axis() -> None:
    """diff_of_means picks up the nuisance axis through the noisy class means; removing the neutral PC drops it."""
    pooled, data, u = _texts(1)
    plain = fit_directions(pooled, data, [3], "diff_of_means")[3]
    removed = fit_directions(pooled, data, [3], "diff_of_means", neutral_pcs=1)[3]
    along_u = [float((vectors.double() @ u.double()).abs().max()) for vectors in (removed, plain)]
    assert along_u[0] < 0.02 and along_u[1] > 0.1
    shift = 2 * torch.eye(HIDDEN, dtype=torch.float64)[0] - torch.eye(HIDDEN, dtype=torch.float64)[1]
    planted = shift - (shift @ u.double()) * u.double()  # positives - negatives (half of them b's), without u
    assert float(removed[0].double() @ planted / planted.norm()) > 0.9


def test_neutral_removal_needs_more_neutral_texts_than_components() -> None:
    pooled, data, _ = _texts()
    with pytest.raises(DirectionError, match="needs more than 60 neutral texts"):
        fit_directions(pooled, data, [3], "lda_diagonal", neutral_pcs=60)
