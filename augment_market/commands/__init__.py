"""The ``augment-market`` commands, one module per concept; :mod:`augment_market.cli` puts
them together and is the one error boundary."""
