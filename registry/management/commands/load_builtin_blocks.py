from django.core.management.base import BaseCommand

from registry.auth import local_organization
from registry.builtin import builtin_block_load


class Command(BaseCommand):
    help = "Create or refresh the built-in SmolLM2 block (idempotent)."

    def handle(self, *args, **options) -> None:
        block = builtin_block_load(organization=local_organization())
        self.stdout.write(f"built-in block ready: {block.block_id}")
