"""PyTorch reference of the official FactSeg (Ma et al., "FactSeg: Foreground Activation-Driven
Small Object Semantic Segmentation in Large-Scale Remote Sensing Imagery", IEEE TGRS 2022).

Written from the specification of the official code (Junjue-Wang/FactSeg on top of Z-Zheng/SimpleCV).
The module tree, hence every ``state_dict`` key, equals the official one, so official checkpoints
load strictly after stripping a DDP ``module.`` prefix, and the Paddle port can be checked against
this file tensor by tensor.

The model is built from a plain dict that mirrors the official ``config.model.params``
(``configs/isaid/factseg.py``), deep-merged over the official defaults, so that reduced variants
(ResNet-18, narrow FPN/decoder channels) can be built for fast tests.

Differences from the official code:
    * no prints; nothing is downloaded: ``resnet_encoder.pretrained`` is ``False`` or the path of a
      local torchvision ResNet file (loaded non-strictly, as the official loader does);
    * the evaluation fusion divides by ``Z`` with ``keepdim=True`` (the official division is only
      right for batch 1);
    * ``JointLoss(sample='OHEM')`` is implemented (the official ``ohem_weight`` is undefined): the
      rule of the official ``ohem_cross_entropy`` with ``ratio`` as the threshold, as the official
      call passes it (see :class:`JointLoss`);
    * ``JointLoss`` also takes the port's ``som_groups`` and ``ohem_min_kept`` keys (defaults 1
      and 100000 give the official behaviour), so the Paddle port's configs build here too;
    * the plain cross-entropy path returns the mean of the per-pixel map, which is what SimpleCV's
      trainer makes of the official unreduced map;
    * ``with_cp`` (gradient checkpointing) is accepted and ignored: it does not change any value;
    * ``fbattention.atttention=True`` and ``skip_decoder`` raise a clear error instead of an
      ``AttributeError`` deep in the forward.
"""

import copy
import inspect
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    'DEFAULT_PARAMS',
    'merge_params',
    'ResNet',
    'ResNetEncoder',
    'FPN',
    'AsymmetricDecoder',
    'FactSeg',
    'JointLoss',
    'som',
    'ohem_weight',
    'ohem_cross_entropy',
    'separate_losses',
    'inverse_weight_cross_entropy',
    'joint_probability',
    'randomize_batchnorm_',
    'RESNET_SPECS',
    'sliding_windows',
    'predict_sliding_window',
]


def merge_params(base, override):
    """Deep-merges ``override`` into a copy of ``base`` (nested dicts merge, other values replace).

    Args:
        base (dict): default values.
        override (dict): user values, e.g. an official ``config.model.params``.

    Returns:
        dict: a new nested dict; the inputs are not modified.
    """
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_params(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# ----------------------------------------------------------------------------------------------
# Encoder: torchvision ResNet ("v1.5", stride on the 3x3 conv) without fc.
# ----------------------------------------------------------------------------------------------


def _conv3x3(in_channels, out_channels, stride=1):
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels, out_channels, stride=1):
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """ResNet-18/34 block: conv3x3(stride)-BN-ReLU-conv3x3-BN, plus identity or downsample, ReLU."""

    expansion = 1

    def __init__(self, in_channels, width, stride=1, downsample=None):
        super().__init__()
        self.conv1 = _conv3x3(in_channels, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x):
        """``(N, in_channels, H, W) -> (N, width, H / stride, W / stride)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """ResNet-50/101 block: 1x1-BN-ReLU, 3x3(stride)-BN-ReLU, 1x1(x4)-BN, residual add, ReLU."""

    expansion = 4

    def __init__(self, in_channels, width, stride=1, downsample=None):
        super().__init__()
        self.conv1 = _conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        """``(N, in_channels, H, W) -> (N, 4 * width, H / stride, W / stride)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


#: resnet_type -> (block class, blocks per stage)
RESNET_SPECS = {
    'resnet18': (BasicBlock, (2, 2, 2, 2)),
    'resnet34': (BasicBlock, (3, 4, 6, 3)),
    'resnet50': (Bottleneck, (3, 4, 6, 3)),
    'resnet101': (Bottleneck, (3, 4, 23, 3)),
}


class ResNet(nn.Module):
    """torchvision ResNet trunk (``conv1, bn1, relu, maxpool, layer1..4``); the fc layer is absent.

    Args:
        resnet_type (str): one of :data:`RESNET_SPECS`.
    """

    def __init__(self, resnet_type):
        super().__init__()
        if resnet_type not in RESNET_SPECS:
            raise ValueError(f'resnet_type {resnet_type!r} is not supported; use one of {sorted(RESNET_SPECS)}')
        block, depths = RESNET_SPECS[resnet_type]
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = 64
        for idx, (width, depth) in enumerate(zip((64, 128, 256, 512), depths), 1):
            stride = 1 if idx == 1 else 2
            layer, in_channels = self._make_layer(block, in_channels, width, depth, stride)
            self.add_module(f'layer{idx}', layer)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    @staticmethod
    def _make_layer(block, in_channels, width, depth, stride):
        out_channels = width * block.expansion
        downsample = None
        if stride != 1 or in_channels != out_channels:
            downsample = nn.Sequential(_conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
        blocks = [block(in_channels, width, stride, downsample)]
        blocks += [block(out_channels, width) for _ in range(1, depth)]
        return nn.Sequential(*blocks), out_channels


def _nostride_dilate(module, dilate):
    """SimpleCV's in-place conversion of a stage to dilated convs (output stride 16 or 8)."""
    for m in module.modules():
        if not isinstance(m, nn.Conv2d):
            continue
        if m.stride == (2, 2):
            m.stride = (1, 1)
            if m.kernel_size == (3, 3):
                m.dilation = (dilate // 2, dilate // 2)
                m.padding = (dilate // 2, dilate // 2)
        elif m.kernel_size == (3, 3):
            m.dilation = (dilate, dilate)
            m.padding = (dilate, dilate)


class ResNetEncoder(nn.Module):
    """SimpleCV ``ResNetEncoder``: returns ``[c2, c3, c4, c5]`` (strides 4/8/16/32 at OS 32).

    Args:
        resnet_type (str): ``resnet18|34|50|101``.
        include_conv5 (bool): if False, only ``[c2, c3, c4]`` are returned.
        batchnorm_trainable (bool): if False, encoder BN params are frozen and BNs stay in eval mode.
        pretrained (bool | str): ``False`` or the path of a torchvision ResNet state dict.
        freeze_at (int): 0 freezes nothing; >=1 stem (its BN kept in eval mode); >=2..5 layer1..4.
        output_stride (int): 32, 16 (dilated layer4) or 8 (dilated layer3 and layer4).
        with_cp, stem3_3x3: accepted for config compatibility; no effect on values.
    """

    def __init__(
        self,
        resnet_type='resnet50',
        include_conv5=True,
        batchnorm_trainable=True,
        pretrained=False,
        freeze_at=0,
        output_stride=32,
        with_cp=(False, False, False, False),
        stem3_3x3=False,
    ):
        super().__init__()
        del with_cp, stem3_3x3
        if output_stride not in (8, 16, 32):
            raise ValueError(f'output_stride must be 8, 16 or 32, got {output_stride}')
        self.include_conv5 = include_conv5
        self.batchnorm_trainable = batchnorm_trainable
        self.freeze_at = freeze_at
        self.resnet = ResNet(resnet_type)
        if pretrained is True:
            raise ValueError(
                'resnet_encoder.pretrained=True would download weights; pass False '
                'or the path of a local torchvision ResNet file'
            )
        if pretrained:
            state = torch.load(pretrained, map_location='cpu', weights_only=True)
            self.resnet.load_state_dict(state, strict=False)
        if output_stride == 16:
            _nostride_dilate(self.resnet.layer4, 2)
        elif output_stride == 8:
            _nostride_dilate(self.resnet.layer3, 2)
            _nostride_dilate(self.resnet.layer4, 4)
        if not batchnorm_trainable:
            for m in self.resnet.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.requires_grad_(False)
        # freeze_at 1 freezes conv1 and bn1, each step above it one more stage.
        stages = [
            self.resnet.conv1,
            self.resnet.bn1,
            self.resnet.layer1,
            self.resnet.layer2,
            self.resnet.layer3,
            self.resnet.layer4,
        ]
        num_frozen = freeze_at + 1 if freeze_at >= 1 else 0
        for m in stages[:num_frozen]:
            m.requires_grad_(False)
        self.train()

    def train(self, mode=True):
        """Sets the mode; frozen BNs (see class doc) stay in eval mode, as in SimpleCV."""
        super().train(mode)
        if self.freeze_at >= 1:
            self.resnet.bn1.eval()
        if not self.batchnorm_trainable:
            for m in self.resnet.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, x):
        """Args: x (N, 3, H, W). Returns: list of (N, C_i, H/s_i, W/s_i), s_i = 4, 8, 16, 32."""
        r = self.resnet
        x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        c2 = r.layer1(x)
        c3 = r.layer2(c2)
        c4 = r.layer3(c3)
        if not self.include_conv5:
            return [c2, c3, c4]
        return [c2, c3, c4, r.layer4(c4)]


# ----------------------------------------------------------------------------------------------
# FPN and decoder
# ----------------------------------------------------------------------------------------------


def _kaiming_uniform_conv(in_channels, out_channels, kernel_size):
    """SimpleCV ``conv_with_kaiming_uniform()``: conv with bias, weight U(+-sqrt(3/fan_in)), bias 0."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2)
    nn.init.kaiming_uniform_(conv.weight, a=1)
    nn.init.constant_(conv.bias, 0)
    return conv


class FPN(nn.Module):
    """SimpleCV FPN: 1x1 laterals ``fpn_inner{1..4}``, 3x3 outputs ``fpn_layer{1..4}``, nearest x2.

    Args:
        in_channels_list (list[int]): channels of ``[c2, c3, c4, c5]``.
        out_channels (int): channels of every output level.
    """

    def __init__(self, in_channels_list, out_channels):
        super().__init__()
        self.num_levels = len(in_channels_list)
        for idx, in_channels in enumerate(in_channels_list, 1):
            self.add_module(f'fpn_inner{idx}', _kaiming_uniform_conv(in_channels, out_channels, 1))
            self.add_module(f'fpn_layer{idx}', _kaiming_uniform_conv(out_channels, out_channels, 3))

    def forward(self, feats):
        """Args: feats, list of (N, C_i, H_i, W_i), finest first, H_i = 2 H_{i+1}.

        Returns:
            tuple of (N, out_channels, H_i, W_i), finest first. The top-down path carries the
            merged lateral map (before the 3x3 conv).
        """
        last = getattr(self, f'fpn_inner{self.num_levels}')(feats[-1])
        results = [getattr(self, f'fpn_layer{self.num_levels}')(last)]
        for idx in range(self.num_levels - 1, 0, -1):
            top_down = F.interpolate(last, scale_factor=2, mode='nearest')
            last = getattr(self, f'fpn_inner{idx}')(feats[idx - 1]) + top_down
            results.insert(0, getattr(self, f'fpn_layer{idx}')(last))
        return tuple(results)


class AsymmetricDecoder(nn.Module):
    """The official ``AssymetricDecoder``: per level conv3x3(no bias)-BN-ReLU[-bilinear x2] stacks.

    Level ``i`` at stride ``s`` gets ``max(log2(s) - log2(out_stride), 1)`` layers; each layer
    upsamples x2 with ``align_corners=True`` unless the level is already at ``out_stride``.
    Parameter keys: ``blocks.{i}.{j}.0.weight`` (conv), ``blocks.{i}.{j}.1.*`` (BN).

    Args:
        in_channels (int): channels of every input level.
        out_channels (int): channels of every layer and of the output.
        in_feat_output_strides (tuple[int]): stride of each input level.
        out_feat_output_stride (int): stride of the output.
    """

    def __init__(self, in_channels, out_channels, in_feat_output_strides=(4, 8, 16, 32), out_feat_output_stride=4):
        super().__init__()
        self.blocks = nn.ModuleList()
        for in_stride in in_feat_output_strides:
            num_upsample = int(math.log2(int(in_stride))) - int(math.log2(int(out_feat_output_stride)))
            num_layers = num_upsample if num_upsample != 0 else 1
            self.blocks.append(
                nn.Sequential(
                    *[
                        nn.Sequential(
                            nn.Conv2d(in_channels if idx == 0 else out_channels, out_channels, 3, 1, 1, bias=False),
                            nn.BatchNorm2d(out_channels),
                            nn.ReLU(inplace=True),
                            nn.UpsamplingBilinear2d(scale_factor=2) if num_upsample != 0 else nn.Identity(),
                        )
                        for idx in range(num_layers)
                    ]
                )
            )

    def forward(self, feats):
        """Args: feats, list of (N, in_channels, H/s_i, W/s_i). Returns: (N, out_channels, H/4, W/4)."""
        outs = [block(feat) for block, feat in zip(self.blocks, feats)]
        # Official: Python sum (0 + f0 + f1 + ...) divided by the literal 4.
        return sum(outs) / 4.0


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------


def joint_probability(fg_pred, bi_pred):
    """Fuses class and foreground logits into normalised joint class probabilities.

    ``p_0 ~ (1 - sigmoid(b)) softmax(s)_0`` and ``p_k ~ sigmoid(b) softmax(s)_k`` (k >= 1),
    normalised over classes with ``keepdim=True``. The products are written into a copy of the
    softmax as the official code does.

    Args:
        fg_pred (Tensor): class logits (N, C, H, W).
        bi_pred (Tensor): foreground logit (N, 1, H, W).

    Returns:
        Tensor: (N, C, H, W), sums to 1 over dim 1.
    """
    fgp = torch.sigmoid(bi_pred)
    clsp = torch.softmax(fg_pred, dim=1)
    joint = torch.clone(clsp)
    joint[:, 0, :, :] = (1 - fgp).squeeze(dim=1) * clsp[:, 0, :, :]
    joint[:, 1:, :, :] = fgp * clsp[:, 1:, :, :]
    return joint / torch.sum(joint, dim=1, keepdim=True)


def som(losses, ratio, eps=1e-6):
    """Small-object mining: mean of the non-zero values among the top ``int(ratio * numel)`` losses.

    Args:
        losses (Tensor): per-pixel losses of any shape (ignored pixels hold 0 and count in numel).
        ratio (float): kept fraction.
        eps (float): added to the count; 1e-6 in the official ``module/loss.py`` (used by
            ``JointLoss``), 0 in the official ``module/factseg.py`` copy (used by ``cls_loss``).
            The count is int64, so ``count + eps`` has torch's default dtype (float32) and the
            eps only matters when the count is 0, even for a float64 model.

    Returns:
        Tensor: scalar.
    """
    num_kept = int(ratio * losses.numel())
    top_loss, _ = losses.reshape(-1).topk(num_kept, -1)
    mask = top_loss != 0
    return torch.sum(top_loss[mask]) / (mask.sum() + eps)


def ohem_weight(prob_true, valid_mask, thresh=0.7, min_kept=100000):
    """Online-hard-example weights, the rule of the official ``ohem_cross_entropy``.

    A valid pixel gets weight 1 if its true-class probability is below
    ``max(thresh, sorted_valid_probs[min(min_kept * N, num_valid - 1)])``, every other pixel 0.
    So at least the ``min_kept * N`` hardest valid pixels are kept, plus every valid pixel whose
    probability is below ``thresh``. No gradient flows through the weights.

    Args:
        prob_true (Tensor): probability of the true class (N, H, W); any value at invalid pixels.
        valid_mask (Tensor): bool (N, H, W).
        thresh (float): probability threshold (official 0.7).
        min_kept (int): pixels kept per image (official 100000).

    Returns:
        Tensor: weights (N, H, W), same dtype as ``prob_true``.
    """
    with torch.no_grad():
        weight = torch.zeros_like(prob_true)
        valid_prob = prob_true[valid_mask]
        threshold = thresh
        if valid_prob.numel() > 0:
            sorted_prob = valid_prob.sort().values
            threshold = max(sorted_prob[min(min_kept * prob_true.shape[0], sorted_prob.numel() - 1)].item(), thresh)
        weight[valid_mask] = (valid_prob < threshold).to(weight.dtype)
    return weight


def ohem_cross_entropy(y_pred, y_true, ignore_index=255, thresh=0.7, min_kept=100000):
    """The official ``ohem_cross_entropy``: softmax CE weighted by :func:`ohem_weight`.

    Args:
        y_pred (Tensor): logits (N, C, H, W).
        y_true (Tensor): int64 labels (N, H, W), ``ignore_index`` ignored.

    Returns:
        Tensor: scalar, weighted sum / weight sum (NaN if no weight, as in the official code).
    """
    valid = y_true != ignore_index
    index = torch.where(valid, y_true, torch.zeros_like(y_true)).unsqueeze(1)
    with torch.no_grad():
        prob_true = torch.softmax(y_pred, dim=1).gather(1, index).squeeze(1)
    weight = ohem_weight(prob_true, valid, thresh, min_kept)
    losses = F.cross_entropy(y_pred, y_true, ignore_index=ignore_index, reduction='none')
    return (losses * weight).sum() / weight.sum()


def inverse_weight_cross_entropy(y_pred, y_true, num_classes, ignore_index=255):
    """The official ``InverseWeightCrossEntroyLoss``: CE with class weights 1/log(1.02 + freq_c).

    Args:
        y_pred (Tensor): logits (N, C, H, W).
        y_true (Tensor): int64 labels (N, H, W).

    Returns:
        Tensor: scalar (weighted mean over valid pixels).
    """
    labels = y_true[(y_true >= 0) & (y_true < num_classes)]
    freq = torch.bincount(labels, minlength=num_classes) / float(labels.numel())
    weight = (1 / torch.log(1.02 + freq)).to(y_pred.dtype)
    return F.cross_entropy(y_pred, y_true, weight=weight, ignore_index=ignore_index)


class JointLoss(nn.Module):
    """FactSeg's joint-probability loss: NLL of :func:`joint_probability`, then SOM or OHEM.

    Args:
        ignore_index (int): label ignored (loss 0, no gradient).
        sample (str): ``'SOM'``: :func:`som` with ``ratio`` and eps 1e-6. ``'OHEM'``: the official
            code calls an undefined ``ohem_weight(p_ci, y, thresh=self.ratio)``; here that call
            is given the rule of the official ``ohem_cross_entropy`` (:func:`ohem_weight` on the
            true-class joint probability, threshold ``ratio``, ``ohem_min_kept`` pixels per image)
            and the loss is the weighted sum divided by the weight sum. ``ratio=0.7`` gives the
            thresholds of the official ``ohem_cross_entropy``.
        ratio (float): SOM kept fraction, or the OHEM probability threshold.
        som_groups (int): SOM is computed on this many equal chunks of the batch and averaged
            (2 on a batch of 8 reproduces the official 2 GPUs x 4 images).
        ohem_min_kept (int): OHEM's minimum of kept pixels per image.
    """

    def __init__(self, ignore_index=255, sample='SOM', ratio=0.2, som_groups=1, ohem_min_kept=100000):
        super().__init__()
        if sample not in ('SOM', 'OHEM'):
            raise ValueError(f"JointLoss sample must be 'SOM' or 'OHEM', got {sample!r}")
        self.ignore_index = ignore_index
        self.sample = sample
        self.ratio = ratio
        self.som_groups = som_groups
        self.ohem_min_kept = ohem_min_kept

    def forward(self, cls_pred, binary_pred, cls_true):
        """Args: cls_pred (N, C, H, W), binary_pred (N, 1, H, W), cls_true (N, H, W) integer.

        Returns:
            Tensor: scalar loss.
        """
        cls_true = cls_true.long()
        p_ci = joint_probability(cls_pred, binary_pred)
        losses = F.nll_loss(torch.log(p_ci), cls_true, ignore_index=self.ignore_index, reduction='none')
        if self.sample == 'SOM':
            if losses.shape[0] % self.som_groups:
                raise ValueError(f'som_groups={self.som_groups} must divide the batch size {losses.shape[0]}')
            chunks = losses.chunk(self.som_groups, dim=0)
            return sum(som(chunk, self.ratio) for chunk in chunks) / len(chunks)
        valid = cls_true != self.ignore_index
        index = torch.where(valid, cls_true, torch.zeros_like(cls_true)).unsqueeze(1)
        weight = ohem_weight(p_ci.detach().gather(1, index).squeeze(1), valid, self.ratio, self.ohem_min_kept)
        return (weight * losses).sum() / weight.sum()


def separate_losses(fg_pred, bi_pred, cls_true, loss_config, num_classes):
    """The official loss path without ``joint_loss`` (``FactSeg.cls_loss``): BCE plus a class loss.

    Args:
        fg_pred (Tensor): class logits (N, C, H, W).
        bi_pred (Tensor): foreground logit (N, 1, H, W).
        cls_true (Tensor): int64 labels (N, H, W).
        loss_config (dict): the model's ``loss`` section (``ignore_index`` and the loss keys).
        num_classes (int): C.

    Returns:
        dict: ``bce_loss`` (BCE-with-logits of foreground vs background, mean over valid pixels)
        and one of ``ohem_loss`` (``ohem`` key present), ``inverse_celoss`` (``inverse_ce``),
        ``som_cls_loss`` (``som`` = ratio; SOM without eps as in the official copy) or
        ``cls_loss`` (CE averaged over all pixels, ignored ones counting as 0).
    """
    ignore_index = loss_config['ignore_index']
    bi_pred = bi_pred.squeeze(dim=1)
    valid = cls_true != ignore_index
    binary_true = (cls_true > 0).to(bi_pred.dtype)
    bce = F.binary_cross_entropy_with_logits(bi_pred[valid], binary_true[valid])
    if 'ohem' in loss_config:
        return dict(ohem_loss=ohem_cross_entropy(fg_pred, cls_true, ignore_index), bce_loss=bce)
    if 'inverse_ce' in loss_config:
        return dict(
            inverse_celoss=inverse_weight_cross_entropy(fg_pred, cls_true, num_classes, ignore_index), bce_loss=bce
        )
    ce = F.cross_entropy(fg_pred, cls_true, ignore_index=ignore_index, reduction='none')
    if 'som' in loss_config:
        return dict(som_cls_loss=som(ce, loss_config['som'], eps=0.0), bce_loss=bce)
    return dict(cls_loss=ce.mean(), bce_loss=bce)


def randomize_batchnorm_(model, generator):
    """Give every BatchNorm random affine parameters and running statistics (for alignment tests).

    gamma ~ U(0.5, 1.5), beta ~ N(0, 0.1^2), running_mean ~ N(0, 0.1^2), running_var ~ U(0.5, 1.5),
    num_batches_tracked ~ U{1..1000}: values a converter or a port could not match by accident.

    Args:
        model (nn.Module): modified in place.
        generator (torch.Generator): the random source.

    Returns:
        nn.Module: ``model``.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(n, generator=generator) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                m.num_batches_tracked.fill_(int(torch.randint(1, 1001, (1,), generator=generator)))
    return model


# ----------------------------------------------------------------------------------------------
# FactSeg
# ----------------------------------------------------------------------------------------------


def _keyword_defaults(function):
    """Return the defaults of ``function``'s keyword parameters, in signature order."""
    parameters = inspect.signature(function).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def _branch_defaults():
    """Return the official defaults of one branch (``foreground`` or ``binary``), a new dict for each."""
    return dict(
        fpn=dict(in_channels_list=[256, 512, 1024, 2048], out_channels=256),
        assymetric_decoder=dict(
            in_channels=256, out_channels=128, in_feat_output_strides=(4, 8, 16, 32), out_feat_output_stride=4
        ),
        out_channels=128,
    )


#: Official defaults (``FactSeg.set_defalut_config`` merged with ``ResNetEncoder``'s, read from the
#: signature of :class:`ResNetEncoder`), except that ``pretrained`` defaults to ``False`` because
#: this reference never downloads.
DEFAULT_PARAMS = dict(
    resnet_encoder=_keyword_defaults(ResNetEncoder.__init__),
    num_classes=16,
    foreground=_branch_defaults(),
    binary=_branch_defaults(),
    fbattention=dict(atttention=False, encode_channel=128),
    loss=dict(ignore_index=255),
)


class FactSeg(nn.Module):
    """FactSeg: ResNet encoder, foreground and binary FPN + decoder branches, 1x1 heads.

    Args:
        params (dict): the official ``config.model.params`` (deep-merged over
            :data:`DEFAULT_PARAMS`).

    Forward:
        train mode: ``model(x, {'cls': y})`` -> ``{'joint_loss': scalar}`` (or the dict of
        :func:`separate_losses` when ``loss`` has no ``joint_loss``); eval mode: ``model(x)`` ->
        class probabilities (N, num_classes, H, W). ``H`` and ``W`` must be multiples of 32.
    """

    def __init__(self, params):
        super().__init__()
        cfg = merge_params(DEFAULT_PARAMS, params)
        if cfg['fbattention'].get('atttention', False):
            raise ValueError(
                'fbattention.atttention=True is broken in the official code '
                '(fbatt_block_list is never built); set it to False'
            )
        if 'skip_decoder' in cfg['foreground']:
            raise ValueError('foreground.skip_decoder is broken in the official code; remove it')
        self.config = cfg
        self.resencoder = ResNetEncoder(**cfg['resnet_encoder'])
        self.fgfpn = FPN(**cfg['foreground']['fpn'])
        self.bifpn = FPN(**cfg['binary']['fpn'])
        self.fg_decoder = AsymmetricDecoder(**cfg['foreground']['assymetric_decoder'])
        self.bi_decoder = AsymmetricDecoder(**cfg['binary']['assymetric_decoder'])
        self.fg_cls = nn.Conv2d(cfg['foreground']['out_channels'], cfg['num_classes'], 1)
        self.bi_cls = nn.Conv2d(cfg['binary']['out_channels'], 1, 1)
        loss_cfg = cfg['loss']
        self.joint_loss = JointLoss(**loss_cfg['joint_loss']) if 'joint_loss' in loss_cfg else None

    def logits(self, x):
        """Args: x (N, 3, H, W). Returns: (fg_pred (N, C, H, W), bi_pred (N, 1, H, W)) at input size."""
        feats = self.resencoder(x)
        fg_out = self.fg_decoder(list(self.fgfpn(feats)))
        bi_out = self.bi_decoder(self.bifpn(feats))
        fg_pred = F.interpolate(self.fg_cls(fg_out), scale_factor=4.0, mode='bilinear', align_corners=True)
        bi_pred = F.interpolate(self.bi_cls(bi_out), scale_factor=4.0, mode='bilinear', align_corners=True)
        return fg_pred, bi_pred

    def forward(self, x, y=None):
        """The official FactSeg forward (without its prints).

        Args:
            x: (N, 3, H, W) float images, H and W multiples of 32.
            y: train mode only, ``{'cls': (N, H, W) integer labels}``.

        Returns:
            dict or Tensor: train mode: ``{'joint_loss': scalar}`` (or the separate losses);
            eval mode: (N, C, H, W) fused probabilities (softmax of ``fg_pred`` without joint loss).

        Raises:
            ValueError: train mode without ``y``.
        """
        fg_pred, bi_pred = self.logits(x)
        if self.training:
            if y is None:
                raise ValueError("FactSeg in train mode needs targets: model(x, {'cls': labels})")
            cls_true = y['cls'].long()
            if self.joint_loss is not None:
                return dict(joint_loss=self.joint_loss(fg_pred, bi_pred, cls_true))
            return separate_losses(fg_pred, bi_pred, cls_true, self.config['loss'], self.config['num_classes'])
        if self.joint_loss is not None:
            return joint_probability(fg_pred, bi_pred)
        return torch.softmax(fg_pred, dim=1)


def sliding_windows(height, width, patch_size=896, stride=512):
    """SimpleCV's ``sliding_window`` boxes ``(x1, y1, x2, y2)``, row-major (spec §7.3).

    The patch is clipped to the image; starts are ``0, stride, ...`` up to
    ``ceil((L - k) / stride)`` steps, and a window crossing the border is moved inward to end on it.
    """
    kh, kw = min(patch_size, height), min(patch_size, width)
    ys = [min(i * stride, height - kh) for i in range(math.ceil((height - kh) / stride) + 1)]
    xs = [min(i * stride, width - kw) for i in range(math.ceil((width - kw) / stride) + 1)]
    return [(x, y, x + kw, y + kh) for y in ys for x in xs]


@torch.no_grad()
def predict_sliding_window(
    model,
    image,
    patch_size=896,
    stride=512,
    mean=(123.675, 116.28, 103.53),
    std=(58.395, 57.12, 57.375),
    size_divisor=32,
):
    """The official evaluation procedure (``tools/isaid_eval.py``, spec §9.1) on one image.

    Every window, as float32 0..255 CHW, is normalised ``(x - mean) / std``, zero-padded at the
    bottom and right to a multiple of ``size_divisor`` (after normalisation, as the official
    ``th_divisible_pad``), passed through ``model`` (eval mode, fused probabilities), cropped
    back and added to a full-image ``1 x C x H x W`` float32 sum on the CPU, with a ``H x W``
    count; the prediction is the argmax of their quotient.

    Args:
        model: eval-mode :class:`FactSeg` (or any ``(1, 3, h, w) -> (1, C, h, w)`` module).
        image: ``(H, W, 3)`` uint8 array.
        patch_size, stride: window size and step (official 896 and 512).
        mean, std: normalisation per channel on the 0..255 scale (the official config's).
        size_divisor: windows are padded to a multiple of this.

    Returns:
        torch.Tensor: ``(H, W)`` int64 labels.
    """
    height, width = image.shape[:2]
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    res_img = res_count = None
    for x1, y1, x2, y2 in sliding_windows(height, width, patch_size, stride):
        window = torch.from_numpy(image[y1:y2, x1:x2].astype('float32')).permute(2, 0, 1)
        window = ((window - mean_t) / std_t).unsqueeze(0)
        h, w = y2 - y1, x2 - x1
        pad_h, pad_w = (-h) % size_divisor, (-w) % size_divisor
        window = F.pad(window, [0, pad_w, 0, pad_h], value=0.0)
        out = model(window)[:, :, :h, :w].cpu()
        if res_img is None:
            res_img = torch.zeros(1, out.shape[1], height, width, dtype=torch.float32)
            res_count = torch.zeros(height, width, dtype=torch.float32)
        res_img[:, :, y1:y2, x1:x2] += out
        res_count[y1:y2, x1:x2] += 1
    return (res_img / res_count).argmax(dim=1)[0]
