"""Attribution maps of 2D images and 3D volumes: Captum's methods as callable objects with one protocol.

Every method is an object whose settings are given to its constructor and
whose ``__call__(x, target)`` takes a float tensor of images ``(n, 1, H, W)``
(or volumes ``(n, 1, D, H, W)``: the same code, Grad-CAM on the last
``Conv3d`` upsampled trilinearly, occlusion by cubes) and the class index to
explain per image ``(n,)``, and returns a float32 array ``(n, H, W)`` (``(n,
D, H, W)``): one map per image, in the pixels of the input, larger
where the pixel counts more for the class (MONAI's
``monai.visualize`` objects follow the same pattern).

Gradient methods (``gradcam``, ``integrated-gradients``, ``saliency``) need
the torch module and its gradients (``needs_gradients``); ``occlusion`` needs only a function from
images to class probabilities, so it explains every model, the classical
(scikit-learn) ones through their ``predict_proba``. The attribution itself
is Captum's (Kokhlikyan et al. 2020, https://captum.ai), not hand-written.

A method whose map of a class takes one forward and one backward pass
(``single_pass``: ``gradcam``, ``saliency``) can explain the class the
network predicts in the same pass that predicts it: given
:func:`predicted_score` as its module and no target, it differentiates each
image's largest logit, and the wrapper keeps the logits: ``brainmri
explain`` then runs one forward pass per image instead of two (one to
predict, one to explain).

References
----------
R. R. Selvaraju et al., "Grad-CAM: Visual explanations from deep networks via
gradient-based localization", ICCV 2017, DOI 10.1109/ICCV.2017.74.
M. Sundararajan, A. Taly and Q. Yan, "Axiomatic attribution for deep
networks", ICML 2017 (integrated gradients), arXiv:1703.01365.
K. Simonyan, A. Vedaldi and A. Zisserman, "Deep inside convolutional
networks: visualising image classification models and saliency maps", ICLR
workshop 2014, arXiv:1312.6034.
M. D. Zeiler and R. Fergus, "Visualizing and understanding convolutional
networks", ECCV 2014 (occlusion), DOI 10.1007/978-3-319-10590-1_53.
N. Kokhlikyan et al., "Captum: A unified and generic model interpretability
library for PyTorch", arXiv:2009.07896, 2020.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from brainmri.errors import ConfigError


class GradCAM:
    """Grad-CAM on the last convolution of a module, upsampled to the input (Selvaraju et al. 2017).

    Parameters
    ----------
    module : torch.nn.Module
        Returns logits ``(n, n_classes)``.
    layer : torch.nn.Module or None
        The layer whose activations are weighted; None takes the last
        ``Conv2d`` of ``module``.
    """

    needs_gradients = True
    single_pass = True

    def __init__(self, module, *, layer=None):
        self.module = module
        self.layer = layer

    def __call__(self, x, target) -> np.ndarray:
        from captum.attr import LayerAttribution, LayerGradCam
        from torch import nn

        layer = self.layer
        if layer is None:
            convs = [m for m in self.module.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
            if not convs:
                raise ConfigError(
                    "gradcam needs a network with a 2D or 3D convolution; this one has none; use "
                    "saliency, integrated-gradients or occlusion"
                )
            layer = convs[-1]
        cam = LayerGradCam(self.module, layer).attribute(x, target=target, relu_attributions=True)
        mode = "trilinear" if x.ndim == 5 else "bilinear"
        return _numpy(LayerAttribution.interpolate(cam, tuple(x.shape[2:]), mode))


class IntegratedGradients:
    """Integrated gradients from a black image (Sundararajan et al. 2017).

    Parameters
    ----------
    module : torch.nn.Module
    steps : int
        Points of the Riemann (Gauss-Legendre) sum along the path.
    """

    needs_gradients = True
    single_pass = False

    def __init__(self, module, *, steps: int = 32):
        if not isinstance(steps, int) or steps < 2:
            raise ConfigError(f"integrated-gradients steps must be an integer >= 2, got {steps!r}")
        self.module = module
        self.steps = steps

    def __call__(self, x, target) -> np.ndarray:
        from captum.attr import IntegratedGradients as CaptumIG

        attr = CaptumIG(self.module).attribute(
            x, baselines=0.0, target=target, n_steps=self.steps, internal_batch_size=len(x) * 8
        )
        return _numpy(attr)


class Saliency:
    """Absolute input gradient of the class score (Simonyan et al. 2014).

    Parameters
    ----------
    module : torch.nn.Module
    absolute : bool
        False keeps the gradient's sign (positive where a brighter pixel
        raises the class score): ``brainmri regions`` averages signed maps
        over subjects, so that gradients of inconsistent sign cancel.
    """

    needs_gradients = True
    single_pass = True

    def __init__(self, module, *, absolute: bool = True):
        self.module = module
        self.absolute = absolute

    def __call__(self, x, target) -> np.ndarray:
        from captum.attr import Saliency as CaptumSaliency

        x = x.detach().requires_grad_()  # Captum warns when it has to switch gradients on itself
        return _numpy(CaptumSaliency(self.module).attribute(x, target=target, abs=self.absolute))


class Occlusion:
    """Drop in the class probability when a square patch is set to black (Zeiler and Fergus 2014).

    Parameters
    ----------
    forward : callable
        Images ``(n, 1, H, W)`` (tensor) to class probabilities ``(n,
        n_classes)`` (tensor): a torch module with a softmax, or a classical
        model's ``predict_proba`` behind a tensor conversion.
    window : int or None
        Side of the patch in pixels; None: an eighth of the image side.
    stride : int or None
        Step between patches; None: half the window.
    batch : int
        Occluded images per call of ``forward``.
    """

    needs_gradients = False
    single_pass = False

    def __init__(self, forward: Callable, *, window: int | None = None, stride: int | None = None, batch: int = 64):
        self.forward = forward
        self.window = window
        self.stride = stride
        self.batch = batch

    def __call__(self, x, target) -> np.ndarray:
        from captum.attr import Occlusion as CaptumOcclusion

        window = self.window or max(2, min(x.shape[2:]) // 8)
        stride = self.stride or max(1, window // 2)
        sides = x.ndim - 2
        attr = CaptumOcclusion(self.forward).attribute(
            x,
            sliding_window_shapes=(1,) + (window,) * sides,
            strides=(1,) + (stride,) * sides,
            baselines=0.0,
            target=target,
            perturbations_per_eval=self.batch,
        )
        return _numpy(attr)


def predicted_score(module):
    """``module`` wrapped to output the logit of each image's most probable class, shape ``(n, 1)``.

    Attributing that output (target None) explains the predicted class; the
    wrapper's ``logits`` attribute holds the full logits ``(n, n_classes)``
    of its last call (detached), from which the prediction is read.
    """
    from torch import nn

    class PredictedScore(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.logits = None

        def forward(self, x):
            logits = self.inner(x)
            self.logits = logits.detach()
            return logits.max(dim=1, keepdim=True).values

    return PredictedScore(module)


def _numpy(attr) -> np.ndarray:
    """``(n, 1, ...)`` tensor -> ``(n, ...)`` float32 array."""
    return attr.detach().float().cpu().numpy()[:, 0]


#: Attribution methods by the name ``brainmri explain --method`` takes.
METHODS = {
    "gradcam": GradCAM,
    "integrated-gradients": IntegratedGradients,
    "saliency": Saliency,
    "occlusion": Occlusion,
}
