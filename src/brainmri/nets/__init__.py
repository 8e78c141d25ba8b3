"""Torch networks and pretrained backbones, with no knowledge of the methods that train them.

``cnn`` (Ayadi et al.'s 2D CNN and a small 3D CNN), ``dnn`` (the perceptrons of
the hybrid methods), ``backbones`` (ImageNet backbones, their weights as data)
and ``finetune`` (a backbone with a new head). Each module imports torch at
its top: import it where torch is known to be installed.
"""
