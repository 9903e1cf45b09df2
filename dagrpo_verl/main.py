"""DaGRPO trainer entry: ``python -m dagrpo_verl.main [hydra overrides]``.

Composes ``dagrpo_verl/config/dagrpo_trainer.yaml`` (verl's ``ppo_trainer`` plus
the DaGRPO defaults) and runs verl's PPO trainers with the DaGRPO hooks.
"""

from __future__ import annotations

import hydra


@hydra.main(config_path="config", config_name="dagrpo_trainer", version_base=None)
def main(config) -> None:
    """Hydra entry point."""
    from verl.trainer.main_ppo import main as verl_main

    verl_main.__wrapped__(config)


if __name__ == "__main__":
    main()
