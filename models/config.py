"""Model configurations: one dataclass names an architecture and its sizes."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class JointModelConfig:
    """Sizes of the joint model: face subnet + voice subnet -> one shared Linear -> L2-normalised joint space."""

    name: str
    face_subnet: str  # "inception_resnet_v1" (facenet-pytorch) or "small_cnn"
    face_channels: tuple[int, ...]  # small_cnn only: channels of its stride-2 conv stages
    voice_channels: tuple[int, ...]  # DIMNet-voice conv channels, input (64 mels) first, subnet output last
    subnet_dim: int  # width of both subnets' outputs, the shared layer's input
    embedding_dim: int  # the joint space
    face_input_size: int = 160  # small_cnn only: crops are area-downsampled to this size first (coarse cues suffice)
    # BatchNorm (no affine) on each subnet's output before the shared layer: removes each modality's common
    # direction, which otherwise dominates and leaves all joint embeddings within a tiny cone (cosines ~0.99998)
    subnet_batchnorm: bool = False
    # what each subnet reads: "crop" (160x160 face crops) / "log-mel" (64-band log-mel), or the name of a frozen
    # pretrained space ("dlib-face", "ge2e-voice") whose unit vectors a small "mlp" subnet maps (the experts recipe)
    face_input: str = "crop"
    voice_input: str = "log-mel"
    voice_subnet: str = "dimnet"  # "dimnet" (DIMNet-voice) or "mlp"
    fusion_layers: int = 0  # layers of the fuse-after-align pair encoder over (face, voice) (models/fusion.py); 0: none
    description: str = field(default="", compare=False)

    @property
    def experts(self) -> tuple[str, ...]:
        """The frozen pretrained spaces this model reads (none for a model trained end to end on media)."""
        return tuple(name for name, own in ((self.face_input, "crop"), (self.voice_input, "log-mel")) if name != own)

    @property
    def face_side(self) -> int:
        """The side of the square crop the face subnet itself reads: small_cnn area-resizes MTCNN's 160 px crops to
        its input size first (fvmatch.models.face.SmallFaceCNN), other subnets read them as they are."""
        return self.face_input_size if self.face_subnet == "small_cnn" else 160

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "JointModelConfig":
        known = {key: values[key] for key in cls.__dataclass_fields__ if key in values}
        optional = {"description", "face_input_size", "subnet_batchnorm", "face_input", "voice_input", "voice_subnet",
                    "fusion_layers"}
        missing = set(cls.__dataclass_fields__) - set(known) - optional
        if missing:
            raise ValueError(f"model config lacks {', '.join(sorted(missing))}")
        known["face_channels"] = tuple(known["face_channels"])
        known["voice_channels"] = tuple(known["voice_channels"])
        return cls(**known)


CONFIGS: dict[str, JointModelConfig] = {
    "wang2020": JointModelConfig(
        name="wang2020",
        face_subnet="inception_resnet_v1",
        face_channels=(),
        # DIMNet-voice as in the seed: 64 -> 256 -> 384 -> 576 -> 864 -> 512
        voice_channels=(64, 256, 384, 576, 864, 512),
        subnet_dim=512,
        embedding_dim=256,
        description="Wang et al., SIGIR 2020: Inception-ResNet-v1 faces, DIMNet-voice, shared FC 512->256",
    ),
    "small": JointModelConfig(
        name="small",
        face_subnet="small_cnn",
        face_channels=(32, 64, 96, 128, 192),
        voice_channels=(64, 96, 128, 160, 192, 256),
        subnet_dim=256,
        embedding_dim=256,
        face_input_size=64,
        subnet_batchnorm=True,
        description="small CPU config for tests and the demo: 5-stage CNN on 64x64 faces, narrow DIMNet-voice, shared FC 256->256",
    ),
    "experts": JointModelConfig(
        name="experts",
        face_subnet="mlp",
        face_channels=(128, 512),  # dlib-face's 128-D vector -> hidden 512 -> subnet_dim
        voice_channels=(256, 512),  # ge2e-voice's 256-D vector -> hidden 512 -> subnet_dim
        subnet_dim=256,
        embedding_dim=256,
        subnet_batchnorm=True,
        face_input="dlib-face",
        voice_input="ge2e-voice",
        voice_subnet="mlp",
        description="experts recipe: frozen dlib-face and ge2e-voice vectors, a 2-layer MLP per modality, shared FC 256->256",
    ),
}
CONFIGS["experts-fusion"] = replace(
    CONFIGS["experts"], name="experts-fusion", fusion_layers=2,
    description="fuse-after-align recipe: the experts heads, then a 2-layer pair encoder scoring (face, voice)")


def get_config(name: str) -> JointModelConfig:
    """The named config; KeyError lists the known names."""
    if name not in CONFIGS:
        raise KeyError(f"unknown model config {name!r}; known: {', '.join(sorted(CONFIGS))}")
    return CONFIGS[name]
