"""The YAML configuration: the settings (``model``), how a file is read (``reader``, ``load``)
and each source's block (``exports``)."""
