"""dagrpo-verl: DaGRPO (Distinctiveness-aware Group Relative Policy Optimization,
arXiv 2512.06337) for verl 0.9.x.

Importing this package is cheap and does not import verl. verl loads
``dagrpo_verl.registration`` through the ``verl.plugins`` entry point, which
registers the ``dagrpo`` advantage estimator and policy loss.
"""

__version__ = "0.1.0"
