"""The service end to end on real LFW photos, a real registry (SQLite, or PostgreSQL under IDSVC_TEST_BACKEND) and
a real vector store (FAISS, or Milvus Lite)."""

from __future__ import annotations

import numpy as np
import pytest

from idsvc.errors import IdsvcError
from tests.conftest import lfw_people, search_one


def test_twenty_lfw_people_are_found_and_a_stranger_is_unknown(service, photos):
    people = lfw_people(min_photos=3, count=20)
    probes = {}
    enrolled = 0
    for name, n in people:
        *gallery, probe = photos("lfw", name, *range(1, min(n, 4) + 1))
        r = service.enroll(name, [str(p) for p in gallery])
        assert r.accepted, r.rejected  # some LFW photos hold a second face of similar size: rejected
        assert all(x.code in ("multiple_faces", "low_quality") for x in r.rejected)
        enrolled += len(r.accepted)
        probes[name] = probe
    answers = {item.path: item.result() for item in service.search([str(p) for p in probes.values()])}
    hits = sum(answers[str(p)].faces[0].candidates[0].name == n for n, p in probes.items())
    assert hits >= 19
    stranger = photos("lfw", lfw_people(min_photos=1, count=1, offset=400)[0][0], 1)[0]
    r = search_one(service, stranger)
    assert r.identity is None and r.score is not None and r.score < r.threshold
    st = service.status()
    assert st.templates == enrolled >= 40 and st.identities == 20 and st.index.in_agreement


def test_verify_same_and_different(service, photos):
    a1, a2 = photos("lfw", "Colin_Powell", 1, 2)
    b1 = photos("lfw", "George_W_Bush", 1)[0]
    same, diff = (item.result() for item in service.verify([(str(a1), str(a2)), (str(a1), str(b1))]))
    assert same.same and not diff.same
    assert same.threshold_source == "model_card" and same.score > diff.score
    service.enroll("colin", [str(a1)])
    assert service.verify_identity(str(a2), "colin").same
    assert not service.verify_identity(str(b1), "colin").same
    with pytest.raises(IdsvcError) as err:
        service.verify_identity(str(a2), "nobody")
    assert err.value.code == "identity_not_found"


def test_enroll_skips_known_images_and_reports_bad_ones(service, photos, tmp_path):
    good = photos("lfw", "Colin_Powell", 1, 2, 3)
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "cut.jpg").write_bytes(good[0].read_bytes()[:3000])
    r = service.enroll("colin", [str(p) for p in good] + [str(tmp_path / "notes.jpg"), str(tmp_path / "cut.jpg"),
                                                          str(tmp_path / "missing.jpg")])
    made_bad = [x.code for x in r.rejected if "Colin_Powell" not in x.path]
    assert sorted(made_bad) == ["file_not_found", "not_an_image", "truncated_image"]
    assert len(r.accepted) >= 2 and len(r.accepted) + len(r.rejected) == 6
    one = r.accepted[0].path
    again = service.enroll("colin", [one])
    assert again.accepted == [] and again.skipped[0].reason == "already enrolled"
    other = service.enroll("someone", [one])
    assert other.accepted == [] and "already enrolled as 'colin'" in other.rejected[0].reason
    assert [i.name for i in service.list_identities().identities] == ["colin"]  # no empty identity was created


def test_all_bad_enroll_stores_nothing(service, tmp_path):
    (tmp_path / "a.txt").write_text("x")
    r = service.enroll("ghost", [str(tmp_path / "a.txt")])
    assert r.accepted == [] and r.rejected
    assert service.list_identities().identities == []


def test_delete_leaves_no_row_vector_or_crop(service, photos, settings):
    ids = [t.template_id for t in service.enroll("colin", [str(p) for p in photos("lfw", "Colin_Powell", 1, 2, 3)])
           .accepted]
    assert ids
    service.enroll("bush", [str(photos("lfw", "George_W_Bush", 1)[0])])
    crops = [str(t.crop_path) for t in service.show_identity("colin").template_list]
    assert all(crops) and all(__import__("os").path.exists(c) for c in crops)
    service.delete_identity("colin")
    reg = service.home.registry
    assert not reg.has_identity("colin") and not np.isin(reg.template_ids(), ids).any()
    index = service.home.index.open(repair=False).index  # the saved vectors, as any process would read them
    assert not np.isin(index.ids(), ids).any() and index.ntotal == 1
    assert not any(__import__("os").path.exists(c) for c in crops)


@pytest.mark.embedded_only
def test_index_is_rebuilt_when_it_disagrees_with_the_registry(service, photos, make_service, settings):
    n = len(service.enroll("colin", [str(p) for p in photos("lfw", "Colin_Powell", 1, 2, 3)]).accepted)
    (service.home.index.directory() / "index.faiss").unlink()
    fresh = make_service(settings)
    st = fresh.status()  # reads the manifest only: says so, repairs nothing
    assert not st.index.in_agreement and "index file missing" in st.index.problems
    assert search_one(fresh, photos("lfw", "Colin_Powell", 4)[0]).identity == "colin"  # opening rebuilds it
    st = fresh.status()
    assert st.index.in_agreement and st.index.vectors == n >= 1


def test_rename_and_search_all_faces(service, photos):
    from tests.conftest import SAMPLES

    service.enroll("x", [str(photos("lfw", "Colin_Powell", 1)[0])])
    assert service.rename_identity("x", "Colin Powell").name == "Colin Powell"
    service.enroll("other", [str(photos("lfw", "George_W_Bush", 1)[0])])
    with pytest.raises(IdsvcError) as err:
        service.rename_identity("Colin Powell", "other")
    assert err.value.code == "identity_exists"
    r = search_one(service, SAMPLES / "multiface.jpg", all_faces=True)
    assert len(r.faces) == 6
    main = search_one(service, SAMPLES / "multiface.jpg")  # the large, central face, as facenet chooses
    assert len(main.faces) == 1 and main.faces[0].box in [f.box for f in r.faces]
    group = service.enroll("group", [str(SAMPLES / "multiface.jpg")])  # a template must be unambiguous
    assert group.accepted == [] and group.rejected[0].code == "multiple_faces"


def test_templates_of_another_model_version_are_never_compared(service, photos, settings, tmp_path, make_service):
    import torch

    from idsvc.encoders.checkpoint import save_checkpoint
    from idsvc.encoders.load import load_encoder
    from idsvc.home.pipeline import Pipeline
    from idsvc.service import Service
    from idsvc.settings import load_settings
    from tests.conftest import FACENET_MODEL

    service.enroll("colin", [str(photos("lfw", "Colin_Powell", 1)[0])])
    enc = load_encoder(FACENET_MODEL, device="cpu")  # a torch model whose weights we can nudge
    with torch.no_grad():
        enc.model.trunk.last_linear.weight.mul_(1.01)
    card = save_checkpoint(tmp_path / "other.pt", enc.model, dict(enc.card, name="other"))
    s2 = load_settings(home=settings.home, model=tmp_path / "other.pt", device="cpu")
    other_encoder = load_encoder(tmp_path / "other.pt", device="cpu")
    other = Service(s2, encoder=other_encoder,
                    pipeline=Pipeline(s2, other_encoder, service.home.model.pipeline.detector))
    assert other.home.model.version == card["version"] != service.home.model.version
    with pytest.raises(IdsvcError) as err:
        other.verify_identity(str(photos("lfw", "Colin_Powell", 2)[0]), "colin")
    assert err.value.code == "model_mismatch"
    st = other.status()
    assert st.index.vectors == 0 and st.templates_other_models == {service.home.model.version: 1}
    other.close()
