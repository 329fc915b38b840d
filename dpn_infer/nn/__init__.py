"""PyTorch reference modules of "Dynamic Parameterized Network for CTR Prediction".

These are what users train and the numeric reference the C++ engine is tested against.
Needs torch (``pip install dpn_infer[torch]``).
"""
from .checkpoint import MODEL_CLASSES, load_checkpoint, save_checkpoint
from .crossnet import CrossLayer
from .dien import AUGRU, DIEN, GRU, DIENHeter
from .dyjoint import DyJoint, InterestDecoder, SessionEncoder
from .dylinear import DyLinear, set_impl
from .field import FieldDPN, FieldDyLinear, FieldLayerSpec, fm_operator
from .inputs import InputLayer, to_torch_batch
from .layers import LayerSpec
from .models import DNN, CrossNet, FeatureDPN
from .schema import DenseField, MultiHotField, Schema, SequenceField, SparseField, TimestampField
from .seqdpn import DINHeter, SeqDPN
from .sequence import HeteroDPO, HomoDPO, SelfAttention, TargetAttention, masked_mean
from .generators import Conv1DEncoder, SEGenerator, SeparableConv
from .kfatt import KFAtt
from .sessions import Sessions, segment_sessions

__all__ = ["Schema", "SparseField", "MultiHotField", "DenseField", "InputLayer", "to_torch_batch",
           "DyLinear", "set_impl", "CrossLayer", "LayerSpec", "FeatureDPN", "DNN", "CrossNet",
           "save_checkpoint", "load_checkpoint", "MODEL_CLASSES",
           "FieldDyLinear", "FieldLayerSpec", "FieldDPN", "fm_operator", "SequenceField", "HomoDPO",
           "HeteroDPO", "SelfAttention", "TargetAttention", "masked_mean", "SeqDPN", "DINHeter",
           "TimestampField", "Sessions", "segment_sessions", "KFAtt", "SEGenerator", "SeparableConv",
           "Conv1DEncoder", "GRU", "AUGRU", "DIEN", "DIENHeter",
           "DyJoint", "SessionEncoder", "InterestDecoder"]
