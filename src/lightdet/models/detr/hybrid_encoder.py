"""RT-DETR's hybrid encoder: AIFI (a transformer layer on the coarsest map) and CCFM (top-down + bottom-up fusion).

D-FINE's encoder is the same module with other blocks: :class:`~lightdet.models.detr.blocks.RepNCSPELAN4`
to fuse, :class:`~lightdet.models.detr.blocks.SCDown` to downsample and no activation on the lateral convs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightdet.models.detr.blocks import ConvNormAct, CSPRepLayer, build_activation

BlockFactory = Callable[[int, int], nn.Module]  # (in_channels, out_channels) -> module


def sincos_position_embedding(h: int, w: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """2-D sine-cosine positions ``[h * w, dim]`` (row-major), laid out ``[sin y | cos y | sin x | cos x]``.

    Computed in float64 (as ``transformers`` does) and returned as float32.
    """
    if dim % 4:
        raise ValueError(f"sincos_position_embedding: dim must be divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    out_y = ys.flatten()[:, None] * omega[None]
    out_x = xs.flatten()[:, None] * omega[None]
    return torch.cat((out_y.sin(), out_y.cos(), out_x.sin(), out_x.cos()), dim=1).float()


class TransformerEncoderLayer(nn.Module):
    """Post-norm (or pre-norm) transformer encoder layer; positions are added to queries and keys only.

    Shapes: ``[B, N, C]`` in and out; ``pos`` is ``[1 or B, N, C]``.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.0,
        act: str = "gelu",
        normalize_before: bool = False,
    ) -> None:
        super().__init__()
        self.normalize_before = normalize_before
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.act = build_activation(act)

    def forward(self, x: Tensor, pos: Tensor | None = None) -> Tensor:
        residual = x
        if self.normalize_before:
            x = self.norm1(x)
        qk = x if pos is None else x + pos
        x = residual + self.dropout(self.self_attn(qk, qk, x, need_weights=False)[0])
        if not self.normalize_before:
            x = self.norm1(x)
        residual = x
        if self.normalize_before:
            x = self.norm2(x)
        x = residual + self.dropout(self.linear2(self.dropout(self.act(self.linear1(x)))))
        return x if self.normalize_before else self.norm2(x)


class TransformerEncoder(nn.Module):
    """A stack of :class:`TransformerEncoderLayer` sharing one position embedding."""

    def __init__(self, num_layers: int, **layer_args: object) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerEncoderLayer(**layer_args) for _ in range(num_layers))  # type: ignore[arg-type]

    def forward(self, x: Tensor, pos: Tensor | None) -> Tensor:
        for layer in self.layers:
            x = layer(x, pos)
        return x


class HybridEncoder(nn.Module):
    """Input projections -> AIFI on the levels ``use_encoder_idx`` -> top-down FPN -> bottom-up PAN.

    Args:
        in_channels: channels of the backbone maps (finest first), e.g. ``backbone.out_channels``.
        strides: their strides (carried through as :attr:`strides`).
        hidden_dim: channels of every output map.
        num_heads, ffn_dim, dropout, enc_act: of the AIFI transformer layer(s).
        use_encoder_idx: the levels AIFI runs on (``[2]``: stride 32 only).
        num_encoder_layers: transformer layers per AIFI level (0 disables AIFI).
        pe_temperature: of the sin-cos positions.
        fuse_block: ``(2 * hidden_dim, hidden_dim) -> module`` fusing two concatenated maps (a partial of
            :class:`CSPRepLayer` for RT-DETR, of :class:`RepNCSPELAN4` for D-FINE); default: CSPRep, 3 blocks.
        downsample: ``(hidden_dim, hidden_dim) -> module`` halving the resolution (3x3 stride-2 conv-BN-SiLU
            by default; :class:`SCDown` for D-FINE).
        lateral_act: activation of the 1x1 lateral convs (``"silu"``; D-FINE: None).

    Shapes: ``list of [B, C_l, H_l, W_l]`` -> ``list of [B, hidden_dim, H_l, W_l]``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[int] = (8, 16, 32),
        *,
        hidden_dim: int = 256,
        num_heads: int = 8,
        ffn_dim: int = 1024,
        dropout: float = 0.0,
        enc_act: str = "gelu",
        use_encoder_idx: Sequence[int] = (2,),
        num_encoder_layers: int = 1,
        pe_temperature: float = 10000.0,
        fuse_block: BlockFactory | None = None,
        downsample: BlockFactory | None = None,
        lateral_act: str | None = "silu",
    ) -> None:
        super().__init__()
        if len(in_channels) != len(strides):
            raise ValueError(f"HybridEncoder: {len(in_channels)} in_channels for {len(strides)} strides")
        fuse_block = fuse_block or (lambda i, o: CSPRepLayer(i, o, 3, 1.0, "silu"))
        downsample = downsample or (lambda i, o: ConvNormAct(i, o, 3, 2, act="silu"))
        self.in_channels = list(in_channels)
        self.strides = list(strides)
        self.out_channels = [hidden_dim] * len(in_channels)
        self.hidden_dim = hidden_dim
        self.use_encoder_idx = list(use_encoder_idx)
        self.pe_temperature = pe_temperature
        self.input_proj = nn.ModuleList(ConvNormAct(c, hidden_dim, 1) for c in in_channels)
        layer_args = dict(d_model=hidden_dim, num_heads=num_heads, ffn_dim=ffn_dim, dropout=dropout, act=enc_act)
        self.encoder = nn.ModuleList(
            TransformerEncoder(num_encoder_layers, **layer_args) for _ in self.use_encoder_idx
        )
        num_fusions = len(in_channels) - 1
        self.lateral_convs = nn.ModuleList(
            ConvNormAct(hidden_dim, hidden_dim, 1, act=lateral_act) for _ in range(num_fusions)
        )
        self.fpn_blocks = nn.ModuleList(fuse_block(2 * hidden_dim, hidden_dim) for _ in range(num_fusions))
        self.downsample_convs = nn.ModuleList(downsample(hidden_dim, hidden_dim) for _ in range(num_fusions))
        self.pan_blocks = nn.ModuleList(fuse_block(2 * hidden_dim, hidden_dim) for _ in range(num_fusions))
        self._pos_cache: dict[tuple[int, int, torch.device, torch.dtype], Tensor] = {}

    def position_embedding(self, h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """``[1, h * w, hidden_dim]`` sin-cos positions, cached per size, device and dtype.

        Sizes read from a traced or exported graph (0-dim tensors, symbolic integers) are not cached: the
        positions are computed in the graph, so that an exported model takes any input size as the eager one.
        """
        if not (isinstance(h, int) and isinstance(w, int)):
            pos = sincos_position_embedding(h, w, self.hidden_dim, self.pe_temperature)
            return pos.to(device=device, dtype=dtype)[None]
        key = (h, w, device, dtype)
        if key not in self._pos_cache:
            pos = sincos_position_embedding(h, w, self.hidden_dim, self.pe_temperature)
            self._pos_cache[key] = pos.to(device=device, dtype=dtype)[None]
        return self._pos_cache[key]

    def intra_scale(self, feats: list[Tensor]) -> list[Tensor]:
        """AIFI: the transformer layers on the levels ``use_encoder_idx`` (``[B, C, H, W]`` kept)."""
        for encoder, level in zip(self.encoder, self.use_encoder_idx):
            b, c, h, w = feats[level].shape
            tokens = feats[level].flatten(2).transpose(1, 2)  # [B, H*W, C]
            tokens = encoder(tokens, self.position_embedding(h, w, tokens.device, tokens.dtype))
            feats[level] = tokens.transpose(1, 2).reshape(b, c, h, w)
        return feats

    def cross_scale(self, feats: list[Tensor]) -> list[Tensor]:
        """CCFM: top-down fusion into the finest level, then bottom-up fusion back to the coarsest."""
        n = len(feats)
        inner = [feats[-1]]  # coarsest first while going down
        for i in range(n - 1):
            top = self.lateral_convs[i](inner[0])
            inner[0] = top
            up = F.interpolate(top, scale_factor=2.0, mode="nearest")
            inner.insert(0, self.fpn_blocks[i](torch.cat((up, feats[n - 2 - i]), 1)))
        outs = [inner[0]]
        for i in range(n - 1):
            down = self.downsample_convs[i](outs[-1])
            outs.append(self.pan_blocks[i](torch.cat((down, inner[i + 1]), 1)))
        return outs

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        if len(feats) != len(self.input_proj):
            raise ValueError(f"HybridEncoder expects {len(self.input_proj)} feature maps, got {len(feats)}")
        projected = [proj(f) for proj, f in zip(self.input_proj, feats)]
        return self.cross_scale(self.intra_scale(projected))
