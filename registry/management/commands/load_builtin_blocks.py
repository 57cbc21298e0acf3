from django.conf import settings
from django.core.management.base import BaseCommand

from registry.builtin import builtin_block_load, builtin_embedding_block_load
from registry.models import Organization


class Command(BaseCommand):
    help = "Create or refresh the built-in blocks: SmolLM2 (chat) and the embedding model (idempotent)."

    def handle(self, *args, **options) -> None:
        # The platform organization's public blocks are the ones every organization reaches by plain id.
        organization, _ = Organization.objects.get_or_create(
            slug=settings.SWITCHBOARD_PLATFORM_ORG, defaults={"name": settings.SWITCHBOARD_PLATFORM_ORG.title()})
        block = builtin_block_load(organization=organization)
        self.stdout.write(f"built-in block ready: {block.block_id}")
        embedding = builtin_embedding_block_load(organization=organization)
        self.stdout.write(f"built-in block ready: {embedding.block_id}")
