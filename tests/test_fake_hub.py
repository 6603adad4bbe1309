"""Offline push_to_hub -> from_pretrained round trips through the fake Hub (tests/fake_hub.py)."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest
import torch
from fake_hub import FakeHub, use_fake_hub
from huggingface_hub import HfApi, ModelCard, ModelCardData, constants
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

REPO = "fake-user/tiny-llama"


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=99,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def pushed_llama(fake_hub: FakeHub) -> LlamaForCausalLM:
    model = tiny_llama()
    model.push_to_hub(REPO, token=fake_hub.token)
    return model


def test_push_to_hub_then_from_pretrained(fake_hub: FakeHub, pushed_llama: LlamaForCausalLM) -> None:
    assert {"config.json", "model.safetensors", "README.md"} <= set(fake_hub.list_files(REPO))

    loaded = AutoModelForCausalLM.from_pretrained(REPO)

    assert type(loaded) is LlamaForCausalLM
    expected, actual = pushed_llama.state_dict(), loaded.state_dict()
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensor, actual[name]), name
    assert f"GET /{REPO}/resolve/{fake_hub.repos[('model', REPO)].branches['main']}/model.safetensors" in (
        fake_hub.requests
    )  # really downloaded from the fake Hub, at the pushed commit
    assert fake_hub.unhandled == []


def test_second_push_only_commits_changed_files(fake_hub: FakeHub, pushed_llama: LlamaForCausalLM) -> None:
    repo = fake_hub.repos[("model", REPO)]
    first_head = repo.branches["main"]
    with torch.no_grad():
        pushed_llama.lm_head.weight.add_(1.0)
    pushed_llama.push_to_hub(REPO, token=fake_hub.token)

    second = repo.commits[repo.branches["main"]]
    assert second.parent == first_head
    changed = {path for path, blob in second.files.items() if repo.commits[first_head].files.get(path) != blob}
    assert changed == {"model.safetensors"}
    loaded = AutoModelForCausalLM.from_pretrained(REPO)
    assert torch.equal(loaded.lm_head.weight, pushed_llama.lm_head.weight)


def test_snapshot_download_returns_the_pushed_files(fake_hub: FakeHub, pushed_llama: LlamaForCausalLM) -> None:
    folder = huggingface_hub.snapshot_download(REPO)

    files = sorted(path.relative_to(folder).as_posix() for path in Path(folder).rglob("*") if path.is_file())
    assert files == fake_hub.list_files(REPO)
    for name in files:
        assert (Path(folder) / name).read_bytes() == fake_hub.read_file(REPO, name)
    info = huggingface_hub.model_info(REPO)
    assert info.sha == fake_hub.repos[("model", REPO)].branches["main"]
    assert sorted(sibling.rfilename for sibling in info.siblings) == files
    tree = {entry.path for entry in huggingface_hub.list_repo_tree(REPO)}
    assert tree == set(files)


def test_model_card_and_upload_file_round_trip(fake_hub: FakeHub) -> None:
    api = HfApi(token=fake_hub.token)
    repo_url = api.create_repo("card-only")  # no namespace: whoami gives the fake user
    assert repo_url.repo_id == "fake-user/card-only"
    assert api.create_repo("fake-user/card-only", exist_ok=True).repo_id == "fake-user/card-only"

    card_data = ModelCardData(library_name="contrec_hf", tags=["recommendation", "sequential"], license="mit")
    card = ModelCard.from_template(card_data, model_description="A tiny test recommender.")
    card.push_to_hub("fake-user/card-only", token=fake_hub.token)
    huggingface_hub.upload_file(
        path_or_fileobj=b'{"items": 13}', path_in_repo="extra/meta.json", repo_id="fake-user/card-only"
    )

    loaded = ModelCard.load("fake-user/card-only")
    assert loaded.data.library_name == "contrec_hf"
    assert loaded.data.tags == ["recommendation", "sequential"]
    assert "A tiny test recommender." in loaded.text
    path = huggingface_hub.hf_hub_download("fake-user/card-only", "extra/meta.json")
    assert Path(path).read_bytes() == b'{"items": 13}'
    assert "POST /api/validate-yaml" in fake_hub.requests
    assert {entry.path for entry in api.list_repo_tree("fake-user/card-only", "extra")} == {"extra/meta.json"}


def test_missing_repo_and_file_raise_the_usual_errors(fake_hub: FakeHub) -> None:
    with pytest.raises(OSError, match="not a valid model identifier"):
        AutoModelForCausalLM.from_pretrained("fake-user/does-not-exist")
    with pytest.raises(RepositoryNotFoundError):
        huggingface_hub.hf_hub_download("fake-user/does-not-exist", "config.json")
    with pytest.raises(RepositoryNotFoundError):
        huggingface_hub.model_info("fake-user/does-not-exist")

    HfApi().create_repo("fake-user/empty")
    with pytest.raises(EntryNotFoundError):
        huggingface_hub.hf_hub_download("fake-user/empty", "config.json")


def test_private_repo_needs_the_token(fake_hub: FakeHub) -> None:
    api = HfApi(token=fake_hub.token)
    api.create_repo("fake-user/secret", private=True)
    api.upload_file(path_or_fileobj=b"hidden", path_in_repo="a.txt", repo_id="fake-user/secret")

    assert Path(huggingface_hub.hf_hub_download("fake-user/secret", "a.txt")).read_bytes() == b"hidden"
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).model_info("fake-user/secret")


def test_hub_clients_are_restored_after_use(tmp_path: Path) -> None:
    before = (constants.ENDPOINT, constants.HF_HUB_OFFLINE, huggingface_hub.hf_api.api.endpoint)
    with FakeHub() as hub, use_fake_hub(hub, cache_dir=tmp_path):
        assert constants.ENDPOINT == hub.endpoint == huggingface_hub.hf_api.api.endpoint
        assert constants.HF_HUB_OFFLINE is False
        storage = hub.storage
    assert (constants.ENDPOINT, constants.HF_HUB_OFFLINE, huggingface_hub.hf_api.api.endpoint) == before
    assert not storage.exists()  # a FakeHub without `storage` cleans up its temporary folder


def test_dataset_repo_round_trip(fake_hub: FakeHub) -> None:
    api = HfApi(token=fake_hub.token)
    api.create_repo("fake-user/interactions", repo_type="dataset")
    api.upload_file(
        path_or_fileobj=b"user_id,item_id\nu1,i1\n",
        path_in_repo="data/train.csv",
        repo_id="fake-user/interactions",
        repo_type="dataset",
    )

    folder = Path(huggingface_hub.snapshot_download("fake-user/interactions", repo_type="dataset"))
    assert (folder / "data" / "train.csv").read_bytes() == b"user_id,item_id\nu1,i1\n"
    assert (
        api.dataset_info("fake-user/interactions").sha
        == fake_hub.repos[("dataset", "fake-user/interactions")].branches["main"]
    )
    with pytest.raises(RepositoryNotFoundError):  # same id, other type
        huggingface_hub.model_info("fake-user/interactions")
