"""TensorFlow importer: GraphDef / SavedModel / ConcreteFunction -> Relax with symbolic shapes."""

from .importer import from_tensorflow

__all__ = ["from_tensorflow"]
