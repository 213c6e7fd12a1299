"""Writers used to lock each content path with a lock file of its own under `sites/SITE/locks/memora_storage`,
kept for good: one per path ever written. Paths now share a fixed few (`ContentStore.lock`); delete the old
files, which nothing takes any more."""

from memora_storage import settings


def execute() -> None:
	store = settings.content_store()
	print(f"memora_storage: {store.drop_path_locks()} per-path lock files deleted from {store.lock_dir}")
