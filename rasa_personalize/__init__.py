"""rasa-personalize: a Rasa action-server plugin that personalizes an e-commerce assistant.

Importing this package does nothing but define names: rasa-sdk imports every module
under ``actions`` to find Action subclasses, so engines, connections and settings are
created lazily, on first use.
"""

__version__ = "0.1.0"
