"""Expected-by deadlines (semantics `deadlines-judged`), pure: ``states`` judges every deadline on a view at ``now``;
``cache`` judges again only what moved and is proved equal to a full pass. Nothing is re-exported.
"""
