import factory

from registry.models import Block, Organization


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")


class BlockFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Block

    kind = Block.LLM
    block_id = factory.Sequence(lambda n: f"block-{n}")
    name = factory.LazyAttribute(lambda o: o.block_id)
    description = "A test block"
    tags = factory.LazyFunction(lambda: ["test"])
    input_protocols = factory.LazyFunction(lambda: ["text/plain"])
    output_protocols = factory.LazyFunction(lambda: ["text/plain"])
    metadata = factory.LazyFunction(dict)
    backend_type = "python"
    backend_config = factory.LazyFunction(lambda: {"class": "inference.backends.examples.ReverseTextLLM"})
    organization = factory.SubFactory(OrganizationFactory)
