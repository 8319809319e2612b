# café
def test_x():
    pass
