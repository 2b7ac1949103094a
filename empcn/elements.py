"""Element symbols and names for messages (standard library only: every stage may import it)."""

from __future__ import annotations

from collections.abc import Iterable

#: Element symbols by atomic number (index 0 unused).
SYMBOLS: tuple[str, ...] = ("",) + tuple(
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
    "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb "
    "Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr "
    "Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og".split()
)


def element_name(z: int) -> str:
    """``"Cl (Z=17)"``-style name of an atomic number, for messages."""
    z = int(z)
    return f"{SYMBOLS[z] if 0 < z < len(SYMBOLS) else '?'} (Z={z})"


def symbols(zs: Iterable[int]) -> str:
    """``"H, C, N"``: the symbols of atomic numbers, comma-separated."""
    return ", ".join(SYMBOLS[int(z)] if 0 < int(z) < len(SYMBOLS) else f"Z={int(z)}" for z in zs)
