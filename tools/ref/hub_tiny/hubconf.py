"""A torch.hub entry for a TINY DINOv2-with-registers ViT of exactly the structure of
`dinov2_vitl14_reg` (DV2:dinov2/hub/backbones.py:128-140 with _make_dinov2_model :18-61 and
vit_large DV2:dinov2/models/vision_transformer.py:369-380): same class DinoVisionTransformer,
Block with MemEffAttention, LayerScale, mlp ffn, 4 registers, block_chunks=0,
interpolate_antialias=True, interpolate_offset=0.0; only embed_dim / depth / num_heads /
img_size are small. The official Dino embedder (EMB/dino.py:35-41) loads it through
torch.hub.load(<this dir>, 'dinov2_tiny14_reg', source='local', **backbone_kwargs), i.e. the
same code path as for the real model. Needs the dinov2 checkout on sys.path."""

dependencies = ["torch"]


def dinov2_tiny14_reg(*, pretrained=False, embed_dim=128, depth=2, num_heads=2, img_size=98,
                      mlp_ratio=4, num_register_tokens=4, **kwargs):
    from functools import partial
    from dinov2.models.vision_transformer import DinoVisionTransformer
    from dinov2.layers import MemEffAttention, NestedTensorBlock as Block
    if pretrained:
        raise ValueError("dinov2_tiny14_reg has no pretrained weights")
    return DinoVisionTransformer(
        img_size=img_size, patch_size=14, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
        mlp_ratio=mlp_ratio, init_values=1.0, ffn_layer="mlp", block_chunks=0,
        num_register_tokens=num_register_tokens, interpolate_antialias=True,
        interpolate_offset=0.0, block_fn=partial(Block, attn_class=MemEffAttention), **kwargs)
