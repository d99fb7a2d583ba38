"""APN: attribute prototype network, on concatenated audio-visual features.

Xu, Xian, Wang, Schiele, Akata. "Attribute Prototype Network for Zero-Shot
Learning", NeurIPS 2020; the audio-visual port is the baseline of Mercea et al.,
"Audio-visual Generalised Zero-shot Learning with Cross-modal Attention and
Language", CVPR 2022 (public code ExplainableML/AVCA-GZSL: src/model.py ``APN``,
src/loss.py ``APN_Loss``, src/utils.py ``evaluate_dataset_baseline``).

Model. The input is one vector x = [v ‖ a] (video first, as the public code),
L2-normalised when ``norm_inputs`` (the run scripts set it for the cls features).
The image backbone of APN is gone, so its two heads become two linear maps
without bias from x to the attribute (= text) space, each with E rows (one per
text dimension: "300 prototypes" for the 300-d fastText embeddings)::

    ŷ_ale   = W_ale x            global attribute prediction  (APN's ALE head)
    ŷ_proto = P x                prototype responses, max-pooled over a 1×1 map
                                 (the identity; APN's prototype branch)

Both are drawn as 2e-4·U(0, 1), prototypes first, as in the reference.

Loss (all weights 1 in the public code; ``xe_weight`` and ``attr_weight`` scale
the two kinds of term)::

    L = CE(softmax(ŷ_ale T_trᵀ), y) + MSE(ŷ_ale, t_y)
      + CE(softmax(ŷ_proto T_trᵀ), y) + MSE(ŷ_proto, t_y)

where T_tr are the text embeddings of the training classes and t_y the
positive class's. As in both the original APN code and the AVCA port, the
cross-entropy is taken of the softmax *probabilities* (``nn.CrossEntropyLoss``
applied to a softmax output, i.e. a second softmax); ``double_softmax=false``
takes it of the compatibility scores instead (the textbook form).

Prediction: Euclidean distance between ŷ_ale and each class embedding
(``torch.cdist(pre_attri['final'], text)`` in the public evaluation; it scores
the same distance for its "audio", "video" and "both" outputs).

Notes.
- Without a shared backbone the prototype head shares no parameter with the
  ALE head, and the prediction reads only the ALE head: the prototype terms are
  trained as in the reference (they are in the logged loss) but cannot change
  any prediction or metric.
- No negatives are used (the protocol still draws them; they are ignored).
- Adam, lr 1e-3, batch 256, no weight decay, on every dataset (run scripts).
  The temporal feature sets are averaged for APN (they are the main / cls
  features); nothing is published for the clipclap features (chosen: no input
  normalisation, as for main).
- Reference protocol (``--protocol reference``): preset ``avca2022``, the mean of
  its one output's β's with the zero guard (src/test.py L43-46), the codes'
  epoch selection and stage-2 learning rate (``stage2_lr=val-plateau``); no setting
  differs from the defaults.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avbench.methods import register
from avbench.methods._linear import avca_code_reference
from avbench.methods.base import Batch, Dims, Method, Reference, feature_family
from avbench.methods.layers import rows


@register("apn")
class APN(Method):
    description = "attribute-prototype network: linear attribute heads on video‖audio features, CE over classes + attribute regression"
    paper = "Xu et al., Attribute Prototype Network for Zero-Shot Learning, NeurIPS 2020 (AV port: Mercea et al., CVPR 2022)"

    @classmethod
    def defaults(cls, dataset: str, features: str) -> dict:
        return {
            # run scripts: --norm_inputs for the cls features (VGGish/C3D) only, every dataset
            "norm_inputs": feature_family(features) == "cls",  # clipclap: not published, off as for main
            "double_softmax": True,  # CE of softmax probabilities, as the public code
            "xe_weight": 1.0,
            "attr_weight": 1.0,
            "init_scale": 2e-4,
            "lr": 1e-3,
            "batch_size": 256,
        }

    @classmethod
    def reference_protocol(cls, dataset: str, features: str) -> Reference:
        return avca_code_reference()

    def __init__(self, dims: Dims, config: dict):
        super().__init__(dims, config)
        d_in, k = dims.video + dims.audio, dims.text
        scale = float(self.config["init_scale"])
        self.prototypes = nn.Parameter(scale * torch.rand(k, d_in))  # drawn first, as in the reference
        self.W_ale = nn.Parameter(scale * torch.rand(k, d_in))

    def features(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        x = torch.cat((video, audio), dim=1)
        return F.normalize(x, dim=1) if self.config["norm_inputs"] else x

    def loss(self, batch: Batch):
        x = self.features(batch.audio, batch.video)
        k = self.W_ale.shape[0]
        attr = x @ torch.cat((self.W_ale, self.prototypes)).T  # both heads in one matmul
        attr_ale, attr_proto = attr[:, :k], attr[:, k:]
        target = rows(batch.text, batch.label)

        def xe(a):
            scores = a @ batch.text.T
            if self.config["double_softmax"]:
                scores = scores.softmax(dim=1)
            return F.cross_entropy(scores, batch.label)

        l_xe = xe(attr_ale) + xe(attr_proto)
        l_attr = F.mse_loss(attr_ale, target) + F.mse_loss(attr_proto, target)
        total = float(self.config["xe_weight"]) * l_xe + float(self.config["attr_weight"]) * l_attr
        return total, {"l_xe": l_xe.detach(), "l_attr": l_attr.detach()}

    def distances(self, audio: torch.Tensor, video: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return torch.cdist(self.features(audio, video) @ self.W_ale.T, text)
