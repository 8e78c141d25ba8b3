"""Brain regions that carry a diagnosis: atlases, region features and the genetic mask search (``brainmri regions``)."""
