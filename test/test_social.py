import pytest
import torch

from rsatalker_core.avatar.offsets import RelationshipOffsets
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
    m = SociallyAwareModule(cfg, d_model=24)
    # Each set's two embeddings start orthogonal.
    assert m.orthogonality_loss().item() < 1e-10
    blood, equal = relationship_tensors(Relationship.names())
    q = m.query(blood, equal)
    assert q.shape == (4, 16)
    # The four relationships give four distinct queries and social features.
    assert torch.cdist(q, q).add(torch.eye(4) * 10).min() > 1e-3
    s = m.social_feature(q)
    assert s.shape == (4, 24)
    assert torch.cdist(s, s).add(torch.eye(4) * 10).min() > 1e-6
    # The Gaussian offsetnet is the avatar's (rsatalker_core.avatar.offsets), not the motion model's.
    assert not any("offset" in k for k in m.state_dict())


def test_relationship_offsets():
    torch.manual_seed(0)
    cfg = SocialConfig(embed_dim=16, hidden_dim=32, time_dim=8, max_offset=0.003)
    m = RelationshipOffsets(cfg, num_anchors=10)
    blood, equal = relationship_tensors(Relationship.names())
    # Offsets start at zero (untrained).
    c = m(blood, equal, torch.zeros(4))
    assert c.shape == (4, 10, 3) and c.abs().max() == 0 and m.is_zero()
    torch.nn.init.normal_(m.offsetnet[-1].weight, std=10.0)
    assert not m.is_zero()
    # Once trained: bounded by max_offset, and depending on the relationship and on time t.
    c = m.for_frames("couple", 0, 5)
    assert c.shape == (5, 10, 3)
    assert 0 < c.abs().max() <= cfg.max_offset + 1e-9
    assert not torch.allclose(c[0], c[-1])
    others = [m.for_frames(r, 0, 5) for r in ("siblings", "parent_child", "superior_subordinate")]
    assert all(not torch.allclose(c, o) for o in others)
    # for_frames = forward at t = index / 25 s; per-frame relationships; unknown ("" / None) -> c = 0
    rels = ["couple", "", "siblings", None]
    c = m.for_frames(rels, [7, 8, 30, 2], 4)
    b, e = relationship_tensors(["couple", "siblings"])
    torch.testing.assert_close(c[[0, 2]], m(b, e, torch.tensor([7, 30]) / 25.0))
    assert c[1].abs().max() == 0 and c[3].abs().max() == 0
    with pytest.raises(RelationshipError):
        m.for_frames(["couple"], 0, 2)
    with pytest.raises(RelationshipError):
        m.for_frames("frenemies", 0, 1)
    # Tying to the motion model's embeddings: the same Parameters, so both MLPs read one q.
    social = SociallyAwareModule(cfg, d_model=24)
    m.tie_embeddings(social)
    assert m.blood_embeddings is social.blood_embeddings
    torch.testing.assert_close(m.query(blood, equal), social.query(blood, equal))
    # Saved and read back through the avatar-checkpoint form.
    back = RelationshipOffsets.from_checkpoint(m.to_checkpoint())
    torch.testing.assert_close(back.for_frames("couple", 3, 2), m.for_frames("couple", 3, 2))
