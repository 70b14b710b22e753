import pytest
import torch

from rsatalker_core.config import SocialConfig
from rsatalker_core.errors import RelationshipError
from rsatalker_core.model.social import SociallyAwareModule
from rsatalker_core.relationship import Relationship, relationship_tensors


@pytest.mark.parametrize(
    "text,blood,equal,name",
    [
        ("siblings", True, True, "siblings"),
        ("Parent-Child", True, False, "parent_child"),
        ("couple", False, True, "couple"),
        ("superior_subordinate", False, False, "superior_subordinate"),
        ("blood,equal", True, True, "siblings"),
        ("blood,non-equal", True, False, "parent_child"),
        ("non-blood, equal", False, True, "couple"),
        ("non_blood,non_equal", False, False, "superior_subordinate"),
        ("equal,non-blood", False, True, "couple"),
    ],
)
def test_parse(text, blood, equal, name):
    r = Relationship.parse(text)
    assert (r.blood, r.equal, r.name) == (blood, equal, name)
    assert Relationship.parse(r.axes) == r
    assert Relationship.names()[r.index] == name


@pytest.mark.parametrize("bad", ["friends?", "", "blood", "blood,blood", "blood,equal,x", 3])
def test_parse_rejects(bad):
    with pytest.raises(RelationshipError):
        Relationship.parse(bad)


def test_module_embeddings_and_outputs():
    torch.manual_seed(0)
    cfg = SocialConfig(embed_dim=16, hidden_dim=32, time_dim=8, max_offset=0.003)
    m = SociallyAwareModule(cfg, d_model=24, num_anchors=10)
    # Each set's two embeddings start orthogonal.
    assert m.orthogonality_loss().item() < 1e-10
    blood, equal = relationship_tensors(Relationship.names())
    q = m.query(blood, equal)
    assert q.shape == (4, 16)
    # The four relationships give four distinct queries and social features.
    assert torch.cdist(q, q).add(torch.eye(4) * 10).min() > 1e-3
    s = m.social_feature(q)
    assert s.shape == (4, 24)
    # Offsets start at zero (untrained) and stay within max_offset once trained.
    c = m.gaussian_offsets(q, torch.zeros(4))
    assert c.shape == (4, 10, 3) and c.abs().max() == 0
    torch.nn.init.normal_(m.gaussian_offsetnet[-1].weight, std=10.0)
    c = m.gaussian_offsets(q, torch.linspace(0, 2, 4 * 5).reshape(4, 5))
    assert c.shape == (4, 5, 10, 3)
    assert c.abs().max() <= cfg.max_offset + 1e-9 and c.abs().max() > 0
    # Offsets depend on time t.
    assert not torch.allclose(c[:, 0], c[:, -1])
