"""One module per dataset family; each registers its datasets (names and tasks from `samrepro.catalog`).

`registry.get_spec` imports this package the first time a dataset is looked up (so `import samrepro.data`
stays cheap); this is the only place of the registration cycle. The readers of on-disk formats
(`samrepro.data.formats`) never import the registry.
"""

from . import cifar, digits, faces, fashion_mnist, food101, imagenet  # noqa: F401
