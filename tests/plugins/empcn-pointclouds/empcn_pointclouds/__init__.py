"""empcn-pointclouds: a plug-in package of empcn, installed from outside the empcn source tree.

``dataset.py`` adds the data set ``pointclouds`` (entry point group ``empcn.datasets``); a model for it
sits beside it as its own module, registered in the same way under ``empcn.models``.
"""
